"""Sphinx extension for the book (``_config.yml`` → ``sphinx.local_extensions``): page assets fit
for reading offline and from a ``file://`` copy.

- Sphinx 7.4 writes every inline script that an extension registers after the builder started
  twice (``StandaloneHTMLBuilder.prepare_writing`` re-adds the registry's scripts with the file
  name ``''`` instead of ``None``, so they no longer compare equal). Harmless for ``var``, but
  sphinx-thebe's ``const THEBE_JS_URL`` then throws "Identifier 'THEBE_JS_URL' has already been
  declared" on every page. Each page keeps the first copy of a script only.
- sphinx-thebe (always on in Jupyter Book 1) points every page at thebe on a CDN; the book has no
  live-code launch button, so unless ``launch_buttons.thebe`` is set its assets are left out.
- Search from a ``file://`` copy: Sphinx's search fetches each hit's page for a summary, which the
  browser blocks for ``file://`` (a CORS error per hit in the console). There the hits are listed
  without summaries; served over http(s) (GitHub Pages) nothing changes.

``make check-book`` (scripts/check_book.py) proves the result in a browser with the network off.
"""
from __future__ import annotations

from typing import Any


def _key(asset) -> tuple:
    name = getattr(asset, "filename", asset) or ""
    attrs = getattr(asset, "attributes", {}) or {}
    return (name, tuple(sorted((k, str(v)) for k, v in attrs.items())))


def _thebe_wanted(app) -> bool:
    opts = app.config.html_theme_options or {}
    return bool((opts.get("launch_buttons") or {}).get("thebe"))


def _is_thebe(asset) -> bool:
    name = getattr(asset, "filename", asset) or ""
    body = (getattr(asset, "attributes", {}) or {}).get("body", "")
    return name.endswith(("sphinx-thebe.js", "sphinx-thebe.css")) or "THEBE_JS_URL" in body


def clean_page_assets(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    drop_thebe = not _thebe_wanted(app)
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not assets:
            continue
        seen, kept = set(), []
        for asset in assets:
            k = _key(asset)
            if k in seen or (drop_thebe and _is_thebe(asset)):
                continue
            seen.add(k)
            kept.append(asset)
        context[key] = kept  # a new list: the builder's own list is restored after each page anyway


FILE_SEARCH_JS = ('if (location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS === "object") '
                  '{ DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false; }')


def setup(app):
    # after documentation_options.js (priority 200), before the search runs
    app.add_js_file(None, body=FILE_SEARCH_JS, priority=210)
    # late (after the theme's and myst-nb's handlers), so that their page assets are seen too
    app.connect("html-page-context", clean_page_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
