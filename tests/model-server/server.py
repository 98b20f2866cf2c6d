#!/usr/bin/env python3
"""A scripted model server on loopback for running the real agent CLIs offline in tests.

It speaks the four wire protocols the pinned CLIs use (Anthropic Messages for Claude Code,
OpenAI Responses for Codex, Chat Completions for Aider, the Gemini API for Gemini CLI) and
answers according to directives in the last user message (`@reply(...)`, `@slow(N)`,
`@bash(...)`, `@run(...)`, `@ask(...)`), so a test decides what "the model" does by what it
types. Every request is logged as one JSON line so tests can assert on what reached the model.

It must not know anything about orch: it is a stand-in for a model provider, nothing more.
Python 3.11 standard library only, so CI needs nothing beyond python3.

Usage: server.py --log FILE [--port 0]. Prints "PORT <n>" on the first stdout line once listening.
"""

import argparse
import gzip
import json
import re
import sys
import threading
import time
import traceback
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# How often a slow answer sends a piece: often enough that a client sees steady progress.
SLOW_TICK_S = 0.25

DIRECTIVES = ("reply", "slow", "bash", "run", "ask")
# The directives that decide what the answer is (the last of them in the text wins);
# `slow` only decides how fast it is delivered.
ACTIONS = ("reply", "bash", "run", "ask")


# ---------------------------------------------------------------------------------------------
# Directives


def find_directives(text):
    """The last occurrence of each directive in `text`: {name: (position, argument)}.

    An argument runs to the matching close parenthesis, so `@bash(echo $(date))` keeps its
    nested parentheses; an unclosed one runs to the end of the text.
    """
    found = {}
    if not text:
        return found
    for m in re.finditer(r"@(" + "|".join(DIRECTIVES) + r")\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                depth -= 1
            i += 1
        arg = text[m.end() : i - 1] if depth == 0 else text[m.end() :]
        found[m.group(1)] = (m.start(), arg)
    return found


def plan_for(last_user_text, tool_results):
    """What to answer: a dict with `kind` (text | shell | ask), its fields, and `slow_s`.

    A tool result as the last user turn always ends the turn with its output echoed, so a
    scripted tool call never loops. When the person typed a new prompt in the same turn (Claude
    Code sends a refused tool's result together with the next prompt), the prompt decides.
    """
    if tool_results and not (last_user_text or "").strip():
        first = tool_results[0]
        return {
            "kind": "text",
            "text": "Tool finished: " + first[:200],
            "slow_s": 0.0,
            "directive": "tool_result",
        }
    d = find_directives(last_user_text or "")
    slow_s = 0.0
    if "slow" in d:
        try:
            slow_s = max(0.0, min(600.0, float(d["slow"][1].strip())))
        except ValueError:
            slow_s = 0.0
    actions = [(pos, name, arg) for name, (pos, arg) in d.items() if name in ACTIONS]
    plan = None
    if actions:
        _, name, arg = max(actions)
        if name == "reply":
            plan = {"kind": "text", "text": arg, "directive": "reply"}
        elif name in ("bash", "run"):
            plan = {"kind": "shell", "command": arg, "escalate": name == "bash", "directive": name}
        elif name == "ask":
            parts = [p.strip() for p in arg.split("|")]
            question = parts[0] or "Which one?"
            options = [p for p in parts[1:] if p] or ["Yes", "No"]
            plan = {"kind": "ask", "question": question, "options": options, "directive": "ask"}
    if plan is None:
        one_line = " ".join((last_user_text or "").split())
        plan = {"kind": "text", "text": "OK: " + one_line[:60], "directive": "slow" if "slow" in d else None}
    plan["slow_s"] = slow_s
    return plan


# ---------------------------------------------------------------------------------------------
# JSON schema -> a value that fits it (for structured side requests)


def fit_schema(schema, name="", depth=0):
    """A small value that validates against `schema` (the subset the CLIs use)."""
    if not isinstance(schema, dict) or depth > 12:
        return "ok"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return fit_schema(schema[key][0], name, depth + 1)
    if schema.get("allOf"):
        merged = {}
        for s in schema["allOf"]:
            if isinstance(s, dict):
                merged.update(s)
        return fit_schema(merged, name, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), t[0] if t else "string")
    if isinstance(t, str):
        t = t.lower()  # Gemini writes OBJECT, STRING, ...
    if t is None:
        t = "object" if "properties" in schema else "string"
    if t == "object":
        props = schema.get("properties") or {}
        required = schema.get("required")
        keys = required if required is not None else list(props)
        if not keys:
            keys = list(props)
        return {k: fit_schema(props.get(k, {}), k, depth + 1) for k in keys}
    if t == "array":
        n = max(1, int(schema.get("minItems", 1) or 1))
        return [fit_schema(schema.get("items", {}), name, depth + 1) for _ in range(n)]
    if t == "boolean":
        return False
    if t in ("integer", "number"):
        lo = schema.get("minimum", 0)
        return int(lo) if t == "integer" else float(lo)
    if t == "null":
        return None
    # A string: something readable, and the shape a title or a reason usually has.
    text = "Test session" if "title" in name.lower() else "scripted answer"
    if "minLength" in schema and len(text) < schema["minLength"]:
        text = text.ljust(schema["minLength"], "x")
    if "maxLength" in schema:
        text = text[: schema["maxLength"]]
    return text


# ---------------------------------------------------------------------------------------------
# Reading the requests of each API


# Text the CLIs add to the user's turn themselves: context, reminders, markers. It is not what
# the person typed, so it is never searched for directives nor echoed back.
INJECTED_PREFIXES = (
    "<system-reminder>",  # Claude Code
    "[Request interrupted by user",  # Claude Code, after a refused tool
    "<session_context>",  # Gemini CLI
    "<environment_context>",  # Codex
    "<user_instructions>",  # Codex
    "# AGENTS.md instructions",  # Codex
)


# Text a CLI appends to what the person typed (Aider restates its edit format rules after every
# prompt); the user text is cut where it starts.
APPENDED_MARKERS = ("\n\n# *SEARCH/REPLACE block* Rules:",)


def strip_appended(text):
    for marker in APPENDED_MARKERS:
        i = text.find(marker)
        if i >= 0:
            text = text[:i]
    return text


def text_of_content(content, skip_reminders=True):
    """The text blocks of an Anthropic/OpenAI content value, joined.

    Blocks that start with one of INJECTED_PREFIXES are skipped, so directives inside what the CLI
    added never count.
    """
    if isinstance(content, str):
        return content
    out = []
    for b in content or []:
        if not isinstance(b, dict):
            continue
        if b.get("type") in ("text", "input_text", "output_text") and isinstance(b.get("text"), str):
            t = b["text"]
            if skip_reminders and t.lstrip().startswith(INJECTED_PREFIXES):
                continue
            out.append(t)
    return "\n".join(out)


def tool_result_text(block):
    c = block.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(
            b.get("text", "") for b in c if isinstance(b, dict) and b.get("type") == "text"
        )
    return "" if c is None else json.dumps(c)


def read_anthropic(body):
    last_text, results = "", []
    msgs = body.get("messages") or []
    for m in reversed(msgs):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, list):
            results = [tool_result_text(b) for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        last_text = text_of_content(content)
        break
    structured = bool((body.get("output_config") or {}).get("format"))
    return last_text, results, structured


def read_responses(body):
    items = body.get("input")
    if isinstance(items, str):
        return items, [], False
    last_text, results = "", []
    items = items or []
    # The last user turn: the function outputs after the last message, or the last user message.
    trailing = []
    for it in reversed(items):
        if not isinstance(it, dict):
            continue
        if it.get("type") in ("function_call_output", "custom_tool_call_output"):
            trailing.append(it)
            continue
        if it.get("type") in ("function_call", "custom_tool_call", "reasoning"):
            continue
        if it.get("role") == "user" and not trailing:
            last_text = text_of_content(it.get("content"))
        break
    for it in reversed(trailing):
        out = it.get("output")
        if isinstance(out, dict):
            out = out.get("content", json.dumps(out))
        if isinstance(out, list):
            out = text_of_content(out)
        results.append(out if isinstance(out, str) else json.dumps(out))
    fmt = ((body.get("text") or {}).get("format") or {}).get("type")
    return last_text, results, fmt in ("json_schema", "json_object")


def read_chat(body):
    msgs = body.get("messages") or []
    last_text, results = "", []
    trailing = []
    for m in reversed(msgs):
        if m.get("role") == "tool":
            trailing.append(text_of_content(m.get("content")))
            continue
        if m.get("role") == "user" and not trailing:
            last_text = strip_appended(text_of_content(m.get("content")))
        if m.get("role") in ("user", "assistant"):
            break
    results = list(reversed(trailing))
    fmt = (body.get("response_format") or {}).get("type")
    return last_text, results, fmt in ("json_schema", "json_object")


def read_gemini(body):
    contents = body.get("contents") or []
    last_text, results = "", []
    for c in reversed(contents):
        if c.get("role", "user") != "user":
            continue
        parts = c.get("parts") or []
        results = []
        for p in parts:
            fr = p.get("functionResponse") if isinstance(p, dict) else None
            if fr:
                resp = fr.get("response")
                if isinstance(resp, dict) and len(resp) == 1 and isinstance(next(iter(resp.values())), str):
                    resp = next(iter(resp.values()))
                results.append(resp if isinstance(resp, str) else json.dumps(resp))
        last_text = text_of_content([{"type": "text", "text": p["text"]} for p in parts
                                     if isinstance(p, dict) and isinstance(p.get("text"), str)])
        break
    gc = body.get("generationConfig") or body.get("config") or {}
    structured = gc.get("responseMimeType") == "application/json" or bool(
        gc.get("responseJsonSchema") or gc.get("responseSchema")
    )
    return last_text, results, structured


def gemini_schema(body):
    gc = body.get("generationConfig") or body.get("config") or {}
    return gc.get("responseJsonSchema") or gc.get("responseSchema") or {}


def declared_tools(body, api):
    """The names of the tools a request declares, to pick the shell and question tools from."""
    names = []
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        if api == "gemini":
            for fd in t.get("functionDeclarations") or t.get("function_declarations") or []:
                names.append(fd.get("name"))
        elif api == "chat" and isinstance(t.get("function"), dict):
            names.append(t["function"].get("name"))
        elif t.get("name"):
            names.append(t["name"])
        elif t.get("type"):
            names.append(t["type"])
    return [n for n in names if n]


def find_tool(body, api, name):
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        if api == "gemini":
            for fd in t.get("functionDeclarations") or t.get("function_declarations") or []:
                if fd.get("name") == name:
                    return fd
        elif t.get("name") == name:
            return t
    return None


# ---------------------------------------------------------------------------------------------
# The HTTP handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "orch-model-server/1"

    def log_message(self, fmt, *args):  # The JSON log is the record; keep stderr quiet.
        pass

    # --- plumbing ---

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            raw = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
        enc = (self.headers.get("Content-Encoding") or "").lower()
        if enc == "gzip":
            raw = gzip.decompress(raw)
        elif enc == "deflate":
            raw = zlib.decompress(raw)
        elif enc and enc != "identity":
            raise ValueError(f"request body encoding {enc!r} is not supported")
        return raw

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def sse(self, data, event=None):
        out = ""
        if event:
            out += f"event: {event}\n"
        out += "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n"
        self.wfile.write(out.encode())
        self.wfile.flush()

    def sse_comment(self):
        # A comment line: every SSE parser ignores it, so a slow answer can keep ticking.
        self.wfile.write(b": tick\n\n")
        self.wfile.flush()

    def paced(self, pieces, slow_s):
        """Yield the pieces of an answer, spreading them over `slow_s` seconds.

        When there are more ticks than pieces, a spare tick yields None and the caller sends
        something empty (a ping, an SSE comment, an empty part), so the answer itself is exactly
        what was asked for however slow it is.
        """
        if slow_s <= 0:
            yield from pieces
            return
        ticks = max(1, int(slow_s / SLOW_TICK_S))
        n = len(pieces)
        for t in range(ticks):
            lo, hi = t * n // ticks, (t + 1) * n // ticks
            if hi > lo:
                yield from pieces[lo:hi]
            else:
                yield None
            time.sleep(SLOW_TICK_S)

    def ticks(self, slow_s):
        """Wait `slow_s` seconds in ticks, yielding once per tick (nothing when not slow)."""
        for _ in range(int(slow_s / SLOW_TICK_S)):
            yield None
            time.sleep(SLOW_TICK_S)

    def log(self, entry):
        entry.setdefault("time", time.time())
        self.server.write_log(entry)

    # --- dispatch ---

    def do_HEAD(self):
        self.handle_any("HEAD")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urlsplit(self.path)
        path = url.path
        entry = {"method": method, "path": self.path, "api": None, "model": None,
                 "last_user_text": None, "tool_results": [], "directive": None,
                 "stream": False, "side": False, "status": 200}
        body = None
        try:
            raw = self.read_body() if method in ("POST", "PUT") else b""
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            entry["body"] = body
            entry["tools"] = declared_tools(body, self.api_of(path)) if isinstance(body, dict) else []
            self.route(method, path, url.query, body, entry)
        except (BrokenPipeError, ConnectionResetError) as e:
            entry["error"] = f"client went away: {e}"
        except Exception as e:  # Never let one request kill the server; say what went wrong.
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["traceback"] = traceback.format_exc()
            entry["status"] = 500
            self.close_connection = True
            try:
                self.send_json(500, {"error": {"type": "server_error", "message": entry["error"]}})
            except Exception:
                pass
        finally:
            self.log(entry)

    @staticmethod
    def api_of(path):
        if path.startswith("/v1/messages"):
            return "anthropic"
        if path.endswith("/responses"):
            return "responses"
        if path.endswith("/chat/completions"):
            return "chat"
        if ":generateContent" in path or ":streamGenerateContent" in path or ":countTokens" in path:
            return "gemini"
        return None

    def route(self, method, path, query, body, entry):
        api = self.api_of(path)
        entry["api"] = api
        if method in ("HEAD", "GET") and path in ("/", ""):
            entry["api"] = "root"
            return self.send_json(200, {"ok": True})
        if method == "GET" and re.search(r"/models/?$", path):
            entry["api"] = "models"
            return self.send_json(200, self.model_list(path))
        if method == "GET" and re.search(r"/models/[^/:]+$", path):
            entry["api"] = "models"
            mid = path.rsplit("/", 1)[1]
            return self.send_json(200, self.model_entry(mid))
        if method == "POST" and api and not isinstance(body, dict):
            entry["status"] = 400
            return self.send_json(400, {"error": {"type": "invalid_request_error", "message": "the request body is not a JSON object"}})
        if method == "POST" and path == "/v1/messages/count_tokens":
            entry["api"] = "anthropic"
            entry["side"] = True
            entry["directive"] = "count_tokens"
            return self.send_json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
        if method == "POST" and api == "anthropic" and path == "/v1/messages":
            return self.anthropic(body, entry)
        if method == "POST" and api == "responses":
            return self.openai_responses(body, entry)
        if method == "POST" and api == "chat":
            return self.chat(body, entry)
        if method == "POST" and api == "gemini":
            return self.gemini(path, query, body, entry)
        entry["api"] = "unknown"
        entry["status"] = 404
        return self.send_json(404, {"error": {"type": "not_found_error", "message": f"no route for {method} {path}"}})

    # --- model lists ---

    def model_entry(self, mid):
        # One shape that satisfies both the OpenAI and the Anthropic list readers.
        return {"id": mid, "object": "model", "type": "model", "created": 1700000000,
                "created_at": "2024-01-01T00:00:00Z", "owned_by": "orch-tests",
                "display_name": mid}

    def model_list(self, path):
        ids = ["mock-model", "claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro"]
        data = [self.model_entry(i) for i in ids]
        return {"object": "list", "data": data, "has_more": False,
                "first_id": ids[0], "last_id": ids[-1], "models": []}

    # --- Anthropic Messages ---

    def anthropic(self, body, entry):
        text, results, structured = read_anthropic(body)
        stream = bool(body.get("stream"))
        entry.update(model=body.get("model"), last_user_text=text, tool_results=results,
                     stream=stream, side=structured)
        if structured:
            schema = (body["output_config"]["format"] or {}).get("schema") or {}
            plan = {"kind": "text", "text": json.dumps(fit_schema(schema)), "slow_s": 0.0, "directive": "structured"}
        else:
            plan = plan_for(text, results)
        entry["directive"] = plan.get("directive")
        model = body.get("model") or "claude-mock"
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

        blocks = []  # (type, payload) for the content to send
        if plan["kind"] == "text":
            blocks.append(("text", plan["text"]))
        elif plan["kind"] == "shell":
            tool = "Bash" if find_tool(body, "anthropic", "Bash") or not body.get("tools") else None
            if tool is None:
                entry["note"] = "the request declares no Bash tool; answered as text"
                blocks.append(("text", f"I would run: {plan['command']}"))
            else:
                blocks.append(("tool_use", "Bash", {"command": plan["command"], "description": "Run a scripted command"}))
        elif plan["kind"] == "ask":
            if find_tool(body, "anthropic", "AskUserQuestion"):
                blocks.append(("tool_use", "AskUserQuestion", self.claude_question(plan)))
            else:
                entry["note"] = "the request declares no AskUserQuestion tool; asked as text"
                blocks.append(("text", self.text_question(plan)))
        entry["answer"] = [b[1] if b[0] == "text" else {"tool": b[1], "input": b[2]} for b in blocks]
        stop = "tool_use" if any(b[0] == "tool_use" for b in blocks) else "end_turn"

        if not stream:
            content = []
            for b in blocks:
                if b[0] == "text":
                    content.append({"type": "text", "text": b[1]})
                else:
                    content.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": b[1], "input": b[2]})
            return self.send_json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                                        "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})

        self.start_sse()
        self.sse({"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant",
                  "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
                  "usage": {**usage, "output_tokens": 1}}}, "message_start")
        for i, b in enumerate(blocks):
            if b[0] == "text":
                self.sse({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}, "content_block_start")
                for piece in self.paced(chunks(b[1]), plan["slow_s"]):
                    if piece is None:
                        self.sse({"type": "ping"}, "ping")
                    else:
                        self.sse({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            else:
                for _ in self.ticks(plan["slow_s"]):
                    self.sse({"type": "ping"}, "ping")
                tid = "toolu_" + uuid.uuid4().hex[:20]
                self.sse({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": tid, "name": b[1], "input": {}}}, "content_block_start")
                self.sse({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(b[2])}}, "content_block_delta")
            self.sse({"type": "content_block_stop", "index": i}, "content_block_stop")
        self.sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}}, "message_delta")
        self.sse({"type": "message_stop"}, "message_stop")

    def claude_question(self, plan):
        return {"questions": [{
            "question": plan["question"],
            "header": "Question",
            "options": [{"label": o, "description": f"Choose {o}"} for o in plan["options"]],
            "multiSelect": False,
        }]}

    @staticmethod
    def text_question(plan):
        return plan["question"] + " " + " / ".join(plan["options"])

    # --- OpenAI Responses ---

    def openai_responses(self, body, entry):
        text, results, structured = read_responses(body)
        stream = bool(body.get("stream"))
        entry.update(model=body.get("model"), last_user_text=text, tool_results=results,
                     stream=stream, side=structured)
        if structured:
            schema = ((body.get("text") or {}).get("format") or {}).get("schema") or {}
            plan = {"kind": "text", "text": json.dumps(fit_schema(schema)), "slow_s": 0.0, "directive": "structured"}
        else:
            plan = plan_for(text, results)
        entry["directive"] = plan.get("directive")
        resp_id = "resp_" + uuid.uuid4().hex[:24]
        items = []
        if plan["kind"] == "shell":
            items.append(self.codex_shell_call(body, plan, entry))
        elif plan["kind"] == "ask":
            items.append(("message", self.text_question(plan)))
        else:
            items.append(("message", plan["text"]))
        entry["answer"] = [it[1] if it[0] == "message" else it[1] for it in items]
        usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}

        def output_item(it, done_text=None):
            if it[0] == "message":
                return {"type": "message", "id": it[2] if len(it) > 2 else None, "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": it[1] if done_text is None else done_text, "annotations": []}]}
            return it[1]

        if not stream:
            out = [output_item(it) for it in items]
            return self.send_json(200, {"id": resp_id, "object": "response", "status": "completed",
                                        "model": body.get("model"), "output": out, "usage": usage})
        seq = iter(range(1_000_000))
        self.start_sse()
        base = {"id": resp_id, "object": "response", "status": "in_progress", "model": body.get("model"), "output": []}
        self.sse({"type": "response.created", "sequence_number": next(seq), "response": base}, "response.created")
        self.sse({"type": "response.in_progress", "sequence_number": next(seq), "response": base}, "response.in_progress")
        for idx, it in enumerate(items):
            if it[0] == "message":
                item_id = "msg_" + uuid.uuid4().hex[:20]
                it = ("message", it[1], item_id)
                self.sse({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": idx,
                          "item": {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}},
                         "response.output_item.added")
                self.sse({"type": "response.content_part.added", "sequence_number": next(seq), "item_id": item_id,
                          "output_index": idx, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
                         "response.content_part.added")
                for piece in self.paced(chunks(it[1]), plan["slow_s"]):
                    if piece is None:
                        self.sse_comment()
                    else:
                        self.sse({"type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item_id,
                                  "output_index": idx, "content_index": 0, "delta": piece}, "response.output_text.delta")
                self.sse({"type": "response.output_text.done", "sequence_number": next(seq), "item_id": item_id,
                          "output_index": idx, "content_index": 0, "text": it[1]}, "response.output_text.done")
                self.sse({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": idx,
                          "item": output_item(it)}, "response.output_item.done")
            else:
                for _ in self.ticks(plan["slow_s"]):
                    self.sse_comment()
                added = dict(it[1], arguments="", status="in_progress")
                self.sse({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": idx, "item": added},
                         "response.output_item.added")
                self.sse({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": idx, "item": it[1]},
                         "response.output_item.done")
        done = dict(base, status="completed", usage=usage, output=[output_item(it) for it in items])
        self.sse({"type": "response.completed", "sequence_number": next(seq), "response": done}, "response.completed")

    def codex_shell_call(self, body, plan, entry):
        """A function call to the shell tool Codex declared, asking to escalate for @bash."""
        tools = declared_tools(body, "responses")
        name = next((n for n in ("exec_command", "shell_command", "shell") if n in tools), None)
        if name is None:
            entry["note"] = f"no shell tool among the declared tools {tools}; used exec_command"
            name = "exec_command"
        params = ((find_tool(body, "responses", name) or {}).get("parameters") or {}).get("properties") or {}
        cmd_key = next((k for k in ("cmd", "command") if k in params), "cmd")
        args = {cmd_key: plan["command"] if name == "exec_command" or cmd_key == "cmd" and params.get("cmd", {}).get("type") == "string"
                else ["bash", "-lc", plan["command"]]}
        if plan["escalate"]:
            args["sandbox_permissions"] = "require_escalated"
            args["justification"] = "The scripted test asks to run this command outside the sandbox."
        call_id = "call_" + uuid.uuid4().hex[:20]
        item = {"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:20], "status": "completed",
                "call_id": call_id, "name": name, "arguments": json.dumps(args)}
        return ("function_call", item)

    # --- Chat Completions ---

    def chat(self, body, entry):
        text, results, structured = read_chat(body)
        stream = bool(body.get("stream"))
        entry.update(model=body.get("model"), last_user_text=text, tool_results=results,
                     stream=stream, side=structured)
        if structured:
            rf = body.get("response_format") or {}
            schema = (rf.get("json_schema") or {}).get("schema") or {}
            plan = {"kind": "text", "text": json.dumps(fit_schema(schema)), "slow_s": 0.0, "directive": "structured"}
        else:
            plan = plan_for(text, results)
        entry["directive"] = plan.get("directive")
        if plan["kind"] == "shell":
            # Aider runs no tools: it offers to run the shell blocks of a reply (with --edit-format diff).
            answer = f"Run this:\n\n```bash\n{plan['command']}\n```\n"
        elif plan["kind"] == "ask":
            answer = self.text_question(plan)
        else:
            answer = plan["text"]
        entry["answer"] = [answer]
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = body.get("model") or "mock-model"
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not stream:
            return self.send_json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                                     "finish_reason": "stop"}], "usage": usage})
        self.start_sse()

        def chunk(delta, finish=None, **extra):
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        # The role goes with the first piece rather than at once: Aider shows "Waiting for
        # <model>" until the first chunk, which is what a slow answer should look like.
        first = True
        for piece in self.paced(chunks(answer), plan["slow_s"]):
            if piece is None:
                self.sse_comment()
                continue
            self.sse(chunk({"role": "assistant", "content": piece} if first else {"content": piece}))
            first = False
        self.sse(chunk({}, "stop", usage=usage))
        self.sse("[DONE]")

    # --- Gemini ---

    def gemini(self, path, query, body, entry):
        m = re.search(r"/models/([^/:]+):(\w+)", path)
        model, op = (m.group(1), m.group(2)) if m else (None, None)
        text, results, structured = read_gemini(body)
        stream = op == "streamGenerateContent"
        entry.update(model=model, last_user_text=text, tool_results=results, stream=stream, side=structured)
        if op == "countTokens":
            entry["side"] = True
            entry["directive"] = "count_tokens"
            return self.send_json(200, {"totalTokens": max(1, len(json.dumps(body)) // 4)})
        if structured:
            plan = {"kind": "text", "text": json.dumps(fit_schema(gemini_schema(body))), "slow_s": 0.0, "directive": "structured"}
        else:
            plan = plan_for(text, results)
        entry["directive"] = plan.get("directive")
        parts = []
        if plan["kind"] == "shell":
            if "run_shell_command" not in declared_tools(body, "gemini"):
                entry["note"] = "the request declares no run_shell_command tool; sent it anyway"
            parts.append({"functionCall": {"name": "run_shell_command",
                                           "args": {"command": plan["command"], "description": "Run a scripted command"}}})
        elif plan["kind"] == "ask":
            parts.append({"text": self.text_question(plan)})
        else:
            parts.append({"text": plan["text"]})
        entry["answer"] = parts
        usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}

        def response(ps, finish=None, with_usage=False):
            cand = {"content": {"role": "model", "parts": ps}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            r = {"candidates": [cand], "modelVersion": model or "gemini-mock"}
            if with_usage:
                r["usageMetadata"] = usage
            return r

        if not stream:
            return self.send_json(200, response(parts, "STOP", True))
        self.start_sse()
        # Gemini CLI's stream reader takes every line for JSON and fails on SSE comments, so a
        # slow answer ticks with empty text parts instead.
        if "text" in parts[0]:
            pieces = chunks(parts[0]["text"])
            for piece in self.paced(pieces, plan["slow_s"]):
                self.sse(response([{"text": piece or ""}]))
            self.sse(response([{"text": ""}], "STOP", True))
        else:
            for _ in self.ticks(plan["slow_s"]):
                self.sse(response([{"text": ""}]))
            self.sse(response(parts, "STOP", True))


def chunks(text, size=8):
    """An answer cut into small deltas, so clients see it stream."""
    if not text:
        return [""]
    return [text[i : i + size] for i in range(0, len(text), size)]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, log_path):
        super().__init__(addr, Handler)
        self.log_lock = threading.Lock()
        self.log_file = open(log_path, "a", encoding="utf-8")

    def write_log(self, entry):
        line = json.dumps(entry, ensure_ascii=False, default=str)
        with self.log_lock:
            self.log_file.write(line + "\n")
            self.log_file.flush()

    def handle_error(self, request, client_address):
        # A broken connection is the client's business; log anything else and keep serving.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        self.write_log({"time": time.time(), "api": "server", "error": repr(exc),
                        "traceback": traceback.format_exc()})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", required=True, help="append one JSON line per request to this file")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    a = p.parse_args()
    srv = Server(("127.0.0.1", a.port), a.log)
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
