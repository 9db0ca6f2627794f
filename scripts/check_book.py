#!/usr/bin/env python3
"""Check the built book (``_build/html``) the way a reader sees it: in a real browser, offline.

Every HTML page of the build is opened in headless Chromium (Debian's ``/usr/bin/chromium``, driven
by the ``playwright`` package; no browser is ever downloaded) with the network off, each time as a
first visit (fresh profile), twice: through its ``file://`` URL, and from a web server started here
on 127.0.0.1 that serves the book under a sub-path, as GitHub Pages serves a project (``--via``).
Findings of both are merged; one seen through only one of them is tagged so. A page fails on:

  request     a request that leaves the book: anything but the build folder's own ``file://`` URLs
              or the local server's book path (``data:``/``blob:``/``about:`` are in-page), e.g. a
              CDN script, a web font, a root-relative path
  missing     a request inside the book that fails (missing script, stylesheet, font, image)
  link        a link (``<a>``, ``<link>``, a meta refresh) to a page or file that is not in the
              build, or to an anchor (``#id``) that the target page does not have
  image       an image that is missing or does not decode
  alt         an image without alt text (no ``alt`` attribute, or an empty one)
  console     a JavaScript console error or an uncaught exception
  tex         unrendered TeX: a text node outside code with a TeX command (``\\mathcal``,
              ``\\frac``, ...), ``$$`` or ``\\(``/``\\[``; a math element MathJax did not typeset;
              a MathJax error node
  wide        a table, code block or typeset display equation wider than the page's content area
              (its full scroll width counted from its left edge; for an equation, the typeset
              formula's own width; a scrollable wrapper does not excuse it)
  table       a Markdown table row (in the page's source, ``_sources/``) whose cell count differs
              from its header's: the extra cells are dropped without a word (an unescaped ``|``
              inside inline code splits a cell, as in ``|hw|``)
  caption     a figure in a cell's output without a caption written for it, or two figures of a
              page with the same caption
  search      the search page, asked for a term from the book's own index, lists no hit (its
              requests and console errors are checked as above)

Collapsed parts (``<details>``, toggles) are opened before measuring, as a reader would.
Prints a report per page and a summary, exits 1 on any failure (2 on a usage error).

    python scripts/check_book.py [--html _build/html] [--chromium /usr/bin/chromium] [--via both]
        [--page book/span.html ...] [--width 1280] [--screenshots DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit

CHECKS = ("request", "missing", "link", "image", "alt", "console", "tex", "wide", "table", "caption", "search")

LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    # Belt and braces for "network off": no proxy, no DNS; every non-file request is also aborted
    # by a route and the browser context is offline.
    "--disable-dev-shm-usage", "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

IN_PAGE_SCHEMES = ("data:", "blob:", "about:", "javascript:")

# Runs in the page once it has loaded and MathJax has finished. Returns everything the checks need.
PAGE_PROBE = r"""
async () => {
  const out = {};
  const within = (p, ms) => Promise.race([p, new Promise(r => setTimeout(() => r('timeout'), ms))]);
  // MathJax 3: wait for the initial typeset, then for the fonts it asked for.
  out.mathjax = !!(window.MathJax && window.MathJax.startup);
  if (out.mathjax && window.MathJax.startup.promise) {
    try { await within(window.MathJax.startup.promise, 15000); } catch (e) { out.mathjaxError = String(e); }
  }
  // Open what a reader can open (hidden cell inputs/outputs, dropdowns, toggles) before measuring.
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('img[loading="lazy"]').forEach(i => { i.loading = 'eager'; });
  await within(document.fonts.ready, 10000);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  // images: give eager-ised ones a moment to decode
  await Promise.all([...document.images].map(i => i.complete ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 3000); })));

  const where = (el) => {
    const sec = el.closest('section[id]');
    let h = null;
    if (sec) { const hh = sec.querySelector('h1,h2,h3,h4,h5,h6'); if (hh) h = hh.textContent.replace(/[#¶]\s*$/, '').trim(); }
    const cell = el.closest('div.cell');
    let cellNo = null;
    if (cell) cellNo = [...document.querySelectorAll('div.cell')].indexOf(cell) + 1;
    return {section: sec ? sec.id : null, heading: h, cell: cellNo,
            kind: cell ? (el.closest('.cell_output') ? 'cell output' : 'cell input') : 'text'};
  };
  const snippet = (s, n = 90) => { s = (s || '').replace(/\s+/g, ' ').trim(); return s.length > n ? s.slice(0, n) + '…' : s; };

  out.ids = [...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name')));
  out.links = [...document.querySelectorAll('a[href], area[href], link[href]')].map(e => ({
    tag: e.tagName.toLowerCase(), rel: e.getAttribute('rel') || '', raw: e.getAttribute('href'),
    href: e.href, text: snippet(e.textContent, 50)}));
  out.images = [...document.querySelectorAll('img')].map(i => ({
    src: i.currentSrc || i.src, raw: i.getAttribute('src'), alt: i.getAttribute('alt'),
    complete: i.complete, naturalWidth: i.naturalWidth, ariaHidden: i.getAttribute('aria-hidden'),
    where: where(i)}));

  // --- TeX left as source ----------------------------------------------------------------------
  // .math: Sphinx's math elements, checked below (typeset or not) rather than as stray text
  const skip = 'pre, code, kbd, samp, tt, script, style, noscript, template, textarea, ' +
               'mjx-container, .highlight, .MathJax, mjx-assistive-mml, .math';
  const texRe = /\$\$|\\[A-Za-z]{2,}|\\[()[\]]/;
  out.tex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const p = n.parentElement;
    if (!p || p.closest(skip)) continue;
    const m = n.nodeValue.match(texRe);
    if (m) out.tex.push({match: m[0], text: snippet(n.nodeValue), where: where(p)});
  }
  const mathEls = [...document.querySelectorAll('.math')];
  out.mathCount = mathEls.length;
  out.mjxCount = document.querySelectorAll('mjx-container').length;
  out.mathUntypeset = mathEls.filter(e => !e.querySelector('mjx-container'))
    .map(e => ({text: snippet(e.textContent), where: where(e)}));
  out.mathErrors = [...document.querySelectorAll('mjx-merror')]
    .map(e => ({text: snippet(e.getAttribute('data-mjx-error') || e.textContent), where: where(e)}));

  // --- too wide for the content area -----------------------------------------------------------
  const area = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const cs = getComputedStyle(area);
  const ar = area.getBoundingClientRect();
  const contentLeft = ar.left + area.clientLeft + parseFloat(cs.paddingLeft);
  const contentRight = ar.left + area.clientLeft + area.clientWidth - parseFloat(cs.paddingRight);
  out.area = {selector: area.tagName.toLowerCase() + (area.className ? '.' + area.className.split(' ').join('.') : ''),
              width: Math.round(contentRight - contentLeft)};
  out.wide = [];
  const blocks = [...area.querySelectorAll('table')].map(e => ['table', e])
    .concat([...area.querySelectorAll('pre')].map(e => ['code block', e]));
  for (const el of area.querySelectorAll('mjx-container[display="true"]')) blocks.push(['equation', el]);
  for (const [kind, el] of blocks) {
    if (kind === 'code block' && el.parentElement.closest('table')) continue;  // counted as its table
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not rendered
    let full = Math.max(el.scrollWidth, r.width);
    let right = r.left + full;
    if (kind === 'equation') {  // the typeset formula itself, wherever its box lets it overflow
      const m = el.querySelector('mjx-math');
      const mr = m ? m.getBoundingClientRect() : r;
      right = Math.max(r.left + el.scrollWidth, mr.right);
      full = right - Math.min(r.left, mr.left);
    }
    if (right > contentRight + 1) {
      let text = el.textContent;
      if (kind === 'equation') {
        const tex = el.querySelector('mjx-assistive-mml') || el;
        text = (el.closest('.math') || el).getAttribute('data-tex') || tex.textContent;
      } else if (kind === 'code block') {  // the longest line is what makes it wide
        text = text.split('\n').reduce((a, b) => b.length > a.length ? b : a, '');
      } else {
        const cap = el.querySelector('caption');
        const head = el.querySelector('thead') || el.querySelector('tr');
        text = (cap ? cap.textContent + ' | ' : '') + (head ? head.textContent : '');
      }
      out.wide.push({kind, width: Math.round(right - contentLeft), area: Math.round(contentRight - contentLeft),
                     text: snippet(text, 100), where: where(el)});
    }
  }
  // --- figures and their captions ----------------------------------------------------------------
  out.figures = [];
  for (const img of area.querySelectorAll('.cell_output img')) {
    const fig = img.closest('figure');
    const cap = fig ? fig.querySelector('figcaption') : null;
    out.figures.push({caption: cap ? cap.textContent.replace(/^\s*Fig(ure|\.)\s*[0-9.]+\s*/, '').trim() : null,
                      src: img.getAttribute('src'), where: where(img)});
  }
  out.title = document.title;
  return out;
}
"""


class _MetaRefresh(HTMLParser):
    def __init__(self):
        super().__init__()
        self.target = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\";]+)", a.get("content") or "", re.I)
            if m:
                self.target = m.group(1).strip()


def meta_refresh(path: Path):
    p = _MetaRefresh()
    p.feed(path.read_text(errors="replace"))
    return p.target


def search_term(index: Path) -> str:
    """The word of the search index found in the most pages (4+ letters)."""
    text = index.read_text()
    data = json.loads(text[text.index("(") + 1:text.rindex(")")])
    counts = {t: (len(d) if isinstance(d, list) else 1) for t, d in data.get("terms", {}).items()
              if len(t) >= 4 and t.isalpha()}
    return max(sorted(counts), key=counts.get) if counts else "book"


def table_cells(row: str) -> int:
    """The cells of a Markdown (GFM) table row: split on every unescaped ``|`` (inline code does not
    protect a pipe), the outer ones optional."""
    body = row.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return len(re.split(r"(?<!\\)\|", body))


_DELIM = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def markdown_texts(path: Optional[Path]) -> list[tuple[int, str]]:
    """``(first line number, text)`` of the Markdown in a page's source: the file itself, or the
    markdown cells of a notebook (line numbers counted within the cell, prefixed by its index)."""
    if path is None or not path.is_file():
        return []
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            return []
        return [(i, "".join(c.get("source", ""))) for i, c in enumerate(cells) if c.get("cell_type") == "markdown"]
    return [(0, path.read_text(encoding="utf-8", errors="replace"))]


def table_findings(path: Optional[Path]) -> list[tuple[str, str]]:
    """Rows of the Markdown tables in ``path`` whose cell count differs from their header's."""
    out = []
    for cell, text in markdown_texts(path):
        lines = text.splitlines()
        fence = False
        for i, line in enumerate(lines):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            if fence or i == 0 or not _DELIM.match(line) or "|" not in lines[i - 1]:
                continue
            want = table_cells(lines[i - 1])
            for j in range(i + 1, len(lines)):
                row = lines[j]
                if "|" not in row or not row.strip():
                    break
                got = table_cells(row)
                if got != want:
                    where = f"cell {cell}, line {j + 1}" if path.suffix == ".ipynb" else f"{j + 1}"
                    out.append((where, f"table row has {got} cells, its header {want} (the extra are "
                                       f"dropped; escape a | inside code as \\|): {row.strip()[:90]!r}"))
    return out


def source_of(root: Path, page: Path) -> Optional[Path]:
    """The source Sphinx copied for ``page`` (``_sources/<page>.md`` / ``.ipynb`` / ``.txt``)."""
    stem = page.relative_to(root).with_suffix("")
    for suffix in (".md", ".ipynb", ".md.txt", ".ipynb.txt", ".txt", ".rst.txt"):
        cand = root / "_sources" / (str(stem) + suffix)
        if cand.is_file():
            return cand
    return None


def fmt_where(w) -> str:
    if not w:
        return ""
    bits = []
    if w.get("heading"):
        bits.append(f"§ {w['heading']!r}")
    elif w.get("section"):
        bits.append(f"#{w['section']}")
    if w.get("cell"):
        bits.append(f"cell {w['cell']} ({w['kind']})")
    return " [" + ", ".join(bits) + "]" if bits else ""


class Origin:
    """Where the pages are opened from: the build folder as ``file://`` URLs, or a local web server
    serving it (127.0.0.1, an ephemeral port, started here and stopped at the end)."""

    # Served under a sub-path, as GitHub Pages serves a project (https://OWNER.github.io/REPO/): a
    # root-relative link (/...) leaves the book there, and does here too.
    SUBPATH = "book-under-test"

    def __init__(self, root: Path, via: str):
        self.root, self.via, self.server = root, via, None
        if via == "http":
            import functools
            import threading
            from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

            prefix = "/" + self.SUBPATH + "/"

            class Handler(SimpleHTTPRequestHandler):
                def log_message(self, *a):
                    pass

                def translate_path(self, path):  # the book lives under /SUBPATH/, nothing else exists
                    if not path.startswith(prefix):
                        return str(root / "\0-outside-the-book")
                    return super().translate_path("/" + path[len(prefix):])

            self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
            self.base = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"
        else:
            self.base = root.as_uri() + "/"

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def url(self, key: str) -> str:
        return self.base + quote(key)

    def local(self, url: str):
        """The file (or folder) a URL names if it lies inside the book, else None."""
        url = urldefrag(url)[0].split("?", 1)[0]
        if not url.startswith(self.base):
            return None
        p = self.root / unquote(url[len(self.base):])
        try:
            p.resolve().relative_to(self.root)
        except ValueError:
            return None
        return p

    def owns(self, url: str) -> bool:
        """A request the book may make: a URL of this origin (the file may still be missing)."""
        return urldefrag(url)[0].startswith(self.base) and self.local(url) is not None


def scan(browser, origin: Origin, pages: list[Path], args) -> dict:
    """Open every page from ``origin``; return findings (``page -> [(check, message)]``) and facts."""
    root = origin.root

    def rel(p: Path) -> str:
        return str(p.resolve().relative_to(root))

    failures: dict[str, list[tuple[str, str]]] = defaultdict(list)
    info: dict[str, dict] = {}
    ids: dict[str, set] = {}  # page -> element ids after load
    links: dict[str, list] = {}
    current = {"page": None}
    page_requests: Counter = Counter()
    reported_urls: dict[str, set] = defaultdict(set)  # page -> URLs already reported (request/missing)

    def on_request(req):
        url, key = req.url, current["page"]
        page_requests[key] += 1
        if url.startswith(IN_PAGE_SCHEMES):
            return
        if not origin.owns(url):
            failures[key].append(("request", f"{req.resource_type} {url}"))
            reported_urls[key].add(url)

    def route(r):
        url = r.request.url
        if origin.owns(url) or url.startswith(IN_PAGE_SCHEMES):
            r.continue_()
        else:
            r.abort("internetdisconnected")

    def on_failed(req):
        url = req.url
        f = origin.local(url)
        if f is not None:
            why = "not found" if "ERR_FILE_NOT_FOUND" in (req.failure or "") else req.failure
            failures[current["page"]].append(("missing", f"{req.resource_type} {rel(f)}: {why}"))
            reported_urls[current["page"]].add(url)

    def on_response(resp):
        f = origin.local(resp.url)
        if f is not None and resp.status >= 400:
            why = "not found" if resp.status == 404 else f"HTTP {resp.status}"
            failures[current["page"]].append(("missing", f"{resp.request.resource_type} {rel(f)}: {why}"))
            reported_urls[current["page"]].add(resp.url)

    def new_context():
        """A fresh, offline (file://) or local-only (http) browser context with the request hooks."""
        context = browser.new_context(viewport={"width": args.width, "height": args.height},
                                      offline=origin.via == "file", service_workers="block")
        context.route("**/*", route)
        context.on("request", on_request)
        context.on("requestfailed", on_failed)
        context.on("response", on_response)
        return context

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            if msg.text.startswith("Failed to load resource") and loc.get("url") in reported_urls[current["page"]]:
                return  # the browser's echo of a request already reported as request/missing
            src = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
            failures[current["page"]].append(("console", f"{msg.text}{src}"))

    for path in pages:
        key = rel(path)
        current["page"] = key
        target = meta_refresh(path)
        if target is not None:  # a redirect stub (index.html): its target must exist
            links[key] = [{"tag": "meta", "rel": "refresh", "raw": target,
                           "href": urljoin(origin.url(key), target), "text": ""}]
            ids[key] = set()
            info[key] = {"redirect": target}
            continue
        # A fresh profile per page: every page is a reader's first visit (no localStorage, no cache).
        # file://: the context is offline too; http: only the local server answers (route below).
        context = new_context()
        context.on("websocket", lambda ws: failures[current["page"]].append(("request", f"websocket {ws.url}")))
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda e: failures[current["page"]].append(("console", f"uncaught: {e}")))
        try:
            page.goto(origin.url(key), wait_until="load", timeout=args.timeout * 1000)
            probe = page.evaluate(PAGE_PROBE)
            if args.screenshots and origin.via == args.via[0]:
                shot = Path(args.screenshots) / (key.replace("/", "__")[:-5] + ".png")
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
        except Exception as e:  # noqa: BLE001 - any failure to open a page is a finding
            failures[key].append(("console", f"page did not load/probe: {str(e).splitlines()[0]}"))
            context.close()
            continue
        context.close()
        ids[key] = set(probe["ids"])
        links[key] = probe["links"]
        info[key] = probe
        for img in probe["images"]:
            f = origin.local(img["src"])
            name = rel(f) if f is not None else img["src"]
            if f is None and not img["src"].startswith(IN_PAGE_SCHEMES):
                pass  # reported as a request leaving the book
            elif f is not None and not f.exists():
                if img["src"] not in reported_urls[key]:  # else already reported as missing
                    failures[key].append(("image", f"missing {name}{fmt_where(img['where'])}"))
            elif not img["complete"] or img["naturalWidth"] == 0:
                failures[key].append(("image", f"does not load/decode: {name}{fmt_where(img['where'])}"))
            alt = img["alt"]
            if alt is None or not alt.strip():
                failures[key].append(("alt", f"{'no alt' if alt is None else 'empty alt'}: {name}"
                                             f"{fmt_where(img['where'])}"))
        for t in probe["tex"]:
            failures[key].append(("tex", f"TeX source {t['match']!r} in text: {t['text']!r}{fmt_where(t['where'])}"))
        for t in probe["mathUntypeset"]:
            failures[key].append(("tex", f"math not typeset by MathJax: {t['text']!r}{fmt_where(t['where'])}"))
        for t in probe["mathErrors"]:
            failures[key].append(("tex", f"MathJax error: {t['text']!r}{fmt_where(t['where'])}"))
        if probe["mathCount"] and not probe["mathjax"]:
            failures[key].append(("tex", f"{probe['mathCount']} math elements but MathJax is not loaded"))
        for w in probe["wide"]:
            failures[key].append(("wide", f"{w['kind']} {w['width']}px in a {w['area']}px content area: "
                                          f"{w['text']!r}{fmt_where(w['where'])}"))
        seen_captions: dict[str, str] = {}
        for fig in probe["figures"]:
            if not fig["caption"]:
                failures[key].append(("caption", f"figure without a caption: {fig['src']}{fmt_where(fig['where'])}"))
            elif fig["caption"] in seen_captions:
                failures[key].append(("caption", f"two figures share the caption {fig['caption'][:80]!r}: "
                                                 f"{seen_captions[fig['caption']]} and {fig['src']}"))
            else:
                seen_captions[fig["caption"]] = fig["src"]
        src = source_of(root, path)
        for line, msg in table_findings(src):
            failures[key].append(("table", f"{rel(src)}:{line}: {msg}"))

    # The search page as a reader uses it: a term the index has, hits listed, no errors on the way.
    if "search.html" in info and (root / "searchindex.js").exists():
        term = search_term(root / "searchindex.js")
        key = "search.html"
        current["page"] = key
        context = new_context()
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda e: failures[key].append(("console", f"uncaught: {e}")))
        try:
            page.goto(origin.url(key) + "?q=" + quote(term), wait_until="load", timeout=args.timeout * 1000)
            page.wait_for_function("() => { const s = document.querySelector('#search-results');"
                                   " return s && !s.querySelector('.search-summary:empty') &&"
                                   " /Search finished|Search Results|found/i.test(s.textContent); }",
                                   timeout=args.timeout * 1000)
            page.wait_for_timeout(500)  # the per-hit summaries (fetches) that follow the list
            hits = page.locator("#search-results ul.search > li").count()
            info[key]["search"] = (term, hits)
            if hits == 0:
                failures[key].append(("search", f"no hit for {term!r}, a term of the book's own index"))
        except Exception as e:  # noqa: BLE001
            failures[key].append(("search", f"search for {term!r} did not finish: {str(e).splitlines()[0]}"))
        context.close()

    # Links are resolved once every page is known, so that cross-page anchors can be checked.
    n_links, external = Counter(), Counter()
    for key, ls in links.items():
        for ln in ls:
            raw, href = ln["raw"] or "", ln["href"] or ""
            if ln["tag"] == "link" and ln["rel"] in ("stylesheet", "preload", "icon", "shortcut icon"):
                continue  # loaded resources: covered by the request checks
            if not raw or raw.startswith(("mailto:", "javascript:", "tel:")):
                continue
            sp = urlsplit(href)
            if sp.scheme in ("http", "https") and sp.netloc != urlsplit(origin.base).netloc:
                external[key] += 1  # a link out is fine for a reader; only requests must stay home
                continue
            if href.startswith(IN_PAGE_SCHEMES):
                continue
            n_links[key] += 1
            url, frag = urldefrag(href)
            f = origin.local(url)
            label = f"<{ln['tag']}{' rel=' + ln['rel'] if ln['rel'] else ''}> {raw!r}" + \
                    (f" ({ln['text']!r})" if ln["text"] else "")
            if f is None:
                failures[key].append(("link", f"{label} points outside the book"))
                continue
            if f.is_dir():
                f = f / "index.html"
            if not f.exists():
                failures[key].append(("link", f"{label}: no such file {rel(f) if f.parent.exists() else f}"))
                continue
            frag = unquote(frag)
            if frag and f.suffix == ".html":
                tkey = rel(f)
                if tkey not in ids:
                    continue  # a page not checked this run (--page): existence is all we know
                if frag not in ids[tkey]:
                    failures[key].append(("link", f"{label}: no anchor #{frag} in {tkey}"))
    # One spelling for both origins, so that their findings can be merged.
    for key in failures:
        failures[key] = [(c, m.replace(origin.base, "")) for c, m in failures[key]]
    return {"failures": failures, "info": info, "requests": page_requests, "links": n_links, "external": external}


#: what --self-test plants: a display equation far wider than any content column, and a table row
#: whose inline code holds an unescaped pipe (one cell more than its header)
PLANTED_EQUATION = "\\[" + " + ".join(f"a_{{{i}}} b_{{{i}}}" for i in range(60)) + " \\qquad (99)\\]"
PLANTED_TABLE = "\n\n| planted | table |\n|---|---|\n| `a |b|` | c |\n"


def self_test(args) -> int:
    """Plant :data:`PLANTED_EQUATION` in a copy of one built page (the first Markdown page with a
    source) and :data:`PLANTED_TABLE` in its source, check that copy alone, and return 0 only when
    both are reported (``wide`` for the equation, ``table`` for the row)."""
    import shutil
    import tempfile

    root = Path(args.html).resolve()
    pages = sorted(p for p in root.glob("book/*.html") if (src := source_of(root, p)) and src.suffix == ".md"
                   and 'class="math' in p.read_text(encoding="utf-8", errors="replace"))
    if not pages:
        print(f"check-book --self-test: no built Markdown page with math (MathJax) and a source under {root}",
              file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="check-book-self-test-") as tmp:
        copy = Path(tmp) / "html"
        shutil.copytree(root, copy, symlinks=True)
        page = copy / pages[0].relative_to(root)
        html = page.read_text(encoding="utf-8")
        marker = "</article>" if "</article>" in html else "</main>"
        planted = f'<div class="math notranslate nohighlight">{PLANTED_EQUATION}</div>'
        page.write_text(html.replace(marker, planted + marker, 1), encoding="utf-8")
        src = source_of(copy, page)
        src.write_text(src.read_text(encoding="utf-8") + PLANTED_TABLE, encoding="utf-8")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=LAUNCH_ARGS)
            origin = Origin(copy, "file")
            try:
                found = scan(browser, origin, [page], args)["failures"].get(str(page.relative_to(copy)), [])
            finally:
                origin.close()
                browser.close()
    wide = [m for c, m in found if c == "wide" and m.startswith("equation")]
    table = [m for c, m in found if c == "table" and "`a |b|`" in m]
    ok = bool(wide) and bool(table)
    print(f"check-book --self-test on {pages[0].relative_to(root)}: planted equation "
          f"{'reported: ' + wide[0][:90] if wide else 'NOT reported'}; planted table row "
          f"{'reported: ' + table[0][:90] if table else 'NOT reported'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", help="the built book (default: _build/html)")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--via", choices=("file", "http", "both"), default="both",
                    help="open pages as file:// URLs, from a local web server on 127.0.0.1, or both "
                         "(default: both; findings are merged, and tagged where only one origin has them)")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in CSS px (default 1280)")
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per page (default 30)")
    ap.add_argument("--page", action="append", default=[],
                    help="check only this page (path relative to --html; repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write the findings as JSON")
    ap.add_argument("--screenshots", metavar="DIR", help="also save a full-page PNG of every page here")
    ap.add_argument("--self-test", action="store_true",
                    help="check the checker: plant a too-wide display equation and a broken table row in a "
                         "copy of one built page and fail unless both are reported")
    args = ap.parse_args(argv)
    args.via = ["file", "http"] if args.via == "both" else [args.via]
    if args.self_test:
        return self_test(args)

    root = Path(args.html).resolve()
    if not (root / "index.html").exists():
        print(f"check-book: no built book at {root} (run `make book` first)", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"check-book: no Chromium at {args.chromium} (Debian: apt-get install -y chromium; "
              f"or `make chromium`)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check-book: the `playwright` package is missing (make setup installs the lock)", file=sys.stderr)
        return 2

    skip_dirs = {"_static", "_sources", "_images", "_downloads"}
    pages = sorted(p for p in root.rglob("*.html")
                   if not (set(p.relative_to(root).parts[:-1]) & skip_dirs))
    if args.page:
        wanted = {str(Path(p)) for p in args.page}
        pages = [p for p in pages if str(p.relative_to(root)) in wanted]
        if not pages:
            print(f"check-book: none of {sorted(wanted)} is a page under {root}", file=sys.stderr)
            return 2

    t0 = time.time()
    runs = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=LAUNCH_ARGS)
        print(f"check-book: Chromium {browser.version} ({args.chromium}), {len(pages)} pages under {root}, "
              f"opened via {' and '.join('file://' if v == 'file' else 'a local http server' for v in args.via)}, "
              f"viewport {args.width}x{args.height}, network off")
        for via in args.via:
            origin = Origin(root, via)
            try:
                runs[via] = scan(browser, origin, pages, args)
            finally:
                origin.close()
        browser.close()

    # Merge the origins' findings: one line per finding, tagged where only one origin has it.
    keys = [str(p.resolve().relative_to(root)) for p in pages]
    tag = {"file": " (file:// only)", "http": " (http only)"}
    failures: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        merged, seen = [], {}
        for via in args.via:
            for f in runs[via]["failures"].get(key, []):
                seen.setdefault(f, []).append(via)
        for f, vias in seen.items():
            only = tag[vias[0]] if len(args.via) > 1 and len(set(vias)) == 1 else ""
            merged.append((f[0], f[1] + only))
        failures[key] = merged
    first = runs[args.via[0]]

    # ---------------------------------------------------------------- report
    total = Counter()
    print()
    for key in keys:
        inf = first["info"].get(key, {})
        fs = failures.get(key, [])
        if "redirect" in inf:
            head = f"redirect -> {inf['redirect']}"
        elif inf:
            head = (f"{first['requests'][key]} requests, {first['links'][key]} internal links "
                    f"({first['external'][key]} external), {len(inf['images'])} images, "
                    f"{inf['mathCount']} math / {inf['mjxCount']} typeset, "
                    f"{len(inf['wide'])} wide of {inf['area']['width']}px")
        else:
            head = "not opened"
        if "search" in inf:
            head += f"; search {inf['search'][0]!r}: {inf['search'][1]} hits"
        print(f"[{'FAIL' if fs else 'ok':4}] {key}: {head}")
        by = Counter(c for c, _ in fs)
        for check in CHECKS:
            if by[check]:
                print(f"         {check} ({by[check]}):")
                for c, msg in fs:
                    if c == check:
                        print(f"           - {msg}")
        total.update(by)
    n_fail_pages = sum(1 for k in keys if failures.get(k))
    print()
    print("check-book summary: " + ", ".join(f"{c} {total[c]}" for c in CHECKS))
    print(f"check-book: {len(pages)} pages, {n_fail_pages} failing, {sum(total.values())} failures, "
          f"{time.time() - t0:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: [{"check": c, "message": m} for c, m in failures.get(k, [])] for k in keys}, indent=1))
    return 1 if sum(total.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
