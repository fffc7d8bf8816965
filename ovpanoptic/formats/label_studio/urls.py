"""Label Studio's local-files image links: written and read back symmetrically.

Label Studio's "Local files" storage writes a task's image as ``/data/local-files/?d=`` followed by
the file's path below ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, percent-encoded with Python's
``urllib.parse.quote`` (``/`` kept), and serves it by decoding the ``d`` query parameter (Django's
``request.GET``: ``%XX`` and ``+`` for a space). :func:`local_files_url` writes such a link,
:func:`local_files_path` reads one back, so a file named ``riders & horses #2 100%+é.jpg``
survives the round trip.

Imports: the standard library only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit

__all__ = ["LOCAL_FILES_PATH", "LOCAL_FILES_PREFIX", "local_files_path", "local_files_url", "url_file_path", "url_quote"]

#: The URL path Label Studio serves local files under.
LOCAL_FILES_PATH = "/data/local-files"

#: What a local-files link starts with; the percent-encoded path follows.
LOCAL_FILES_PREFIX = f"{LOCAL_FILES_PATH}/?d="


def url_quote(text: str) -> str:
    """``text`` percent-encoded for a URL path or query value, ``/`` kept (as Label Studio's storage
    writes it: ``a b&c.jpg`` -> ``a%20b%26c.jpg``)."""
    return quote(text, safe="/")


def local_files_url(path: str) -> str:
    """The local-files link of ``path`` (relative to Label Studio's local-files root, ``/``-separated)."""
    return LOCAL_FILES_PREFIX + url_quote(path)


def local_files_path(url: str) -> str | None:
    """The file path a local-files link names (decoded), or ``None`` when ``url`` is no such link.

    An encoded link is decoded as Label Studio decodes it. A link written without encoding by an
    older tool (``?d=riders & horses.jpg``, ``?d=c#1.jpg``) is read whole when the text after
    ``d=`` holds no other ``key=value`` parameter, so that its image still pairs by name.
    """
    parts = urlsplit(url)
    if not parts.path.rstrip("/").endswith(LOCAL_FILES_PATH):
        return None
    marker = url.find("?")
    query = url[marker + 1 :] if marker >= 0 else ""  # the fragment too: '#' in an unencoded name
    if query.startswith("d=") and not any("=" in piece for piece in query[2:].split("&")):
        return unquote_plus(query[2:])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "d":
            return value
    return ""


def url_file_path(url: str) -> str:
    """The file path a task's image URL names: a local-files link's ``d``, else the URL's path, decoded."""
    local = local_files_path(url)
    return local if local is not None else unquote(urlsplit(url).path)
