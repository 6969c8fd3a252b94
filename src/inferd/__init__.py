"""inferd: a standalone server for the Elasticsearch Inference API."""

__version__ = "0.1.0"

# The Elasticsearch version inferd answers as in `GET /` and `Warning` headers.
ES_COMPAT_VERSION = "9.1.0"
