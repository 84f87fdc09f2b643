"""A Rails-like page for the Early Hints comparison (benches/early_hints.sh): the action thinks
180 ms before it renders; the page has three render-blocking scripts in <head> and, once they
ran, fetches /api/course.json (300 ms in the app) and paints the heading from it (the LCP).
HTTP/1.1 with keep-alive, threaded, like Puma. Usage: python3 app.py PORT"""
import http.server
import json
import sys
import time

SCRIPTS = [f"/assets/blocking{i}-0123456789abcdef.js" for i in range(3)]
BODY_JS = ("/* " + "x" * 80 + " */\n") * 1500  # ~130 KB each, like a Rails bundle
PAGE = """<!DOCTYPE html><html><head><title>course</title>
{scripts}
</head><body><div id="app">loading</div>
<script>
fetch('/api/course.json').then(r => r.json()).then(d => {{
  const h = document.createElement('h1');
  h.style.fontSize = '64px';
  h.textContent = d.title;
  document.getElementById('app').replaceWith(h);
}});
</script></body></html>""".format(
    scripts="\n".join(f'<script src="{s}"></script>' for s in SCRIPTS)
)


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, content_type, cache=None):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if cache:
            self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/":
            time.sleep(0.180)
            self.answer(PAGE, "text/html; charset=utf-8", "no-store")
        elif path in SCRIPTS:
            self.answer(BODY_JS, "application/javascript", "public, max-age=31536000, immutable")
        elif path == "/api/course.json":
            time.sleep(0.300)
            # Cacheable for a minute, as the Dashboard's course JSON (`expires_in 1.minute`):
            # Chromium hands early-hints preloads to the page through its HTTP cache, so a
            # `no-store` answer would be fetched twice.
            self.answer(json.dumps({"title": "Physics 101"}), "application/json", "public, max-age=60")
        elif path == "/up":
            self.answer("ok", "text/plain")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
