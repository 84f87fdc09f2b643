"""Reads a Chromium net log (--log-net-log) of one cold page load and prints, in ms after the
page's request started: when a 103 arrived (or -), when the page's final headers arrived, when
each preloaded resource's first request started and when the page's /api/course.json finished (the heading, the
page's LCP, paints right after it). Usage: python3 netlog.py NETLOG.json"""
import json
import sys

log = json.load(open(sys.argv[1]))
names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
phases = {v: k for k, v in log["constants"]["logEventPhase"].items()}
by_source = {}
for e in log["events"]:
    by_source.setdefault(e["source"]["id"], []).append(e)

requests = []  # (url, start, events)
for events in by_source.values():
    url = None
    for e in events:
        params = e.get("params", {})
        if names.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in params:
            url = params["url"]
            break
    if url and url.startswith("https://"):
        start = min(int(e["time"]) for e in events)
        requests.append((url, start, events))

page = [r for r in requests if r[0].rstrip("/").count("/") == 2]
if not page:
    sys.exit("no page request in the log")
url, t0, events = min(page, key=lambda r: r[1])


def first(events, name, phase=None):
    for e in events:
        if names.get(e["type"]) == name and (phase is None or phases.get(e["phase"]) == phase):
            return int(e["time"])
    return None


early = None
for e in events:
    if "EARLY_HINTS" in names.get(e["type"], ""):
        early = int(e["time"]) - t0
        break
final = None
for name in ("HTTP_TRANSACTION_READ_RESPONSE_HEADERS", "URL_REQUEST_DELEGATE_RESPONSE_STARTED"):
    t = first(events, name)
    if t is not None:
        final = t - t0
        break
out = {"early_hints": early, "final_headers": final, "starts": {}, "json_done": None}
for u, start, evs in requests:
    path = "/" + u.split("/", 3)[3] if u.count("/") >= 3 else "/"
    if path.startswith("/assets/") or path.startswith("/api/"):
        # An early-hints preload and the page's own request are two requests: the first start.
        earlier = out["starts"].get(path)
        out["starts"][path] = start - t0 if earlier is None else min(earlier, start - t0)
    if path == "/api/course.json":
        # The page's own request ends last (from the preload's cache entry when reused).
        end = max(int(e["time"]) for e in evs) - t0
        out["json_done"] = end if out["json_done"] is None else max(out["json_done"], end)
print(json.dumps(out))
