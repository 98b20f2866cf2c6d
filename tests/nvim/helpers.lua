--- Shared helpers of the Neovim scenarios. A scenario runs as
---   nvim --headless --clean -u NONE -l tests/nvim/<name>.lua
--- with ORCH_REPO, ORCH_BIN, ORCH_WORKSPACE, ORCH_RUNTIME_DIR and ORCH_STATE_DIR set. It prints one
--- transcript line per check (`ok <what>` / `FAIL <what>: <detail>`) and exits non-zero on any
--- failure. Waits are wait-for-condition loops, never fixed sleeps.

local H = {}

H.repo = assert(os.getenv("ORCH_REPO"), "ORCH_REPO is not set")
H.bin = os.getenv("ORCH_BIN") or (H.repo .. "/target/debug/orch")
H.ws = os.getenv("ORCH_WORKSPACE")
H.failures = 0
---@type {msg: string, level: integer, title?: string}[]
H.notes = {}

local function out(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end
H.out = out

--- Put the repo on the runtime path, source the plugin file, cd into the workspace and capture
--- notifications.
function H.init()
  vim.opt.rtp:prepend(H.repo)
  vim.cmd.runtime("plugin/orch.lua")
  if H.ws then
    vim.fn.chdir(H.ws)
  end
  vim.notify = function(msg, level, opts)
    msg = tostring(msg)
    table.insert(H.notes, { msg = msg, level = level or vim.log.levels.INFO, title = opts and opts.title })
    out(("  notify[%s%s] %s"):format(
      ({ [0] = "trace", "debug", "info", "warn", "error" })[level or 2] or tostring(level),
      opts and opts.title and (" " .. opts.title) or "",
      (msg:gsub("\n", " | "))
    ))
  end
end

--- `require("orch").setup()` pointed at the binary under test and the workspace.
---@param extra? table
function H.setup(extra)
  return require("orch").setup(vim.tbl_deep_extend("force", {
    cmd = { H.bin, "lsp" },
    root = H.ws,
    reconnect = { initial_ms = 100, max_ms = 2000 },
  }, extra or {}))
end

function H.ok(what)
  out("ok " .. what)
end

function H.fail(what, detail)
  H.failures = H.failures + 1
  out(("FAIL %s: %s"):format(what, tostring(detail)))
end

--- Record a check.
---@return boolean
function H.check(what, cond, detail)
  if cond then
    H.ok(what)
  else
    H.fail(what, detail == nil and "condition false" or (type(detail) == "function" and detail() or detail))
  end
  return cond and true or false
end

--- Wait up to `timeout` ms for `pred()`, then record the check. `detail` (a function) explains a
--- failure with what was seen instead.
---@return boolean
function H.wait(what, timeout, pred, detail)
  local ok = vim.wait(timeout, function()
    local good, res = pcall(pred)
    return good and res
  end, 20)
  if ok then
    H.ok(what)
  else
    H.fail(what, ("timed out after %d ms%s"):format(timeout, detail and ("; " .. tostring(detail())) or ""))
  end
  return ok and true or false
end

--- Run the orch CLI in the workspace.
---@param args string[]
---@param timeout? integer
---@return vim.SystemCompleted
function H.cli(args, timeout)
  local cmd = { H.bin }
  vim.list_extend(cmd, args)
  local ok, res = pcall(function()
    return vim.system(cmd, { cwd = H.ws, text = true }):wait(timeout or 20000)
  end)
  if not ok then
    return { code = -1, stdout = "", stderr = tostring(res), signal = 0 }
  end
  return res
end

--- `orch call <method> <params-json>`: a request through the CLI, as another client would make it.
---@param method string
---@param params? table
---@return any result
---@return string? err
function H.call(method, params)
  local r = H.cli({ "call", method, vim.json.encode(params or vim.empty_dict()) })
  if r.code ~= 0 then
    return nil, ("orch call %s exited %s: %s%s"):format(method, tostring(r.code), r.stderr or "", r.stdout or "")
  end
  local ok, res = pcall(vim.json.decode, r.stdout, { luanil = { object = true, array = true } })
  if not ok then
    return nil, "not JSON: " .. tostring(r.stdout)
  end
  return res
end

--- The text of a buffer.
---@param buf integer
function H.text(buf)
  if not buf or not vim.api.nvim_buf_is_valid(buf) then
    return ""
  end
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

--- A notification containing `needle`, if any.
---@param needle string
function H.note(needle)
  for _, n in ipairs(H.notes) do
    if n.msg:find(needle, 1, true) then
      return n
    end
  end
end

--- The notifications so far, for failure details.
function H.notes_text()
  return table.concat(
    vim.tbl_map(function(n)
      return n.msg
    end, H.notes),
    " | "
  )
end

--- Stub vim.ui.select: `choose(items, opts)` returns the item to pick (nil: dismiss). Every call
--- is recorded in H.selects.
---@param choose fun(items: any[], opts: table): any
function H.stub_select(choose)
  H.selects = {}
  vim.ui.select = function(items, opts, on_choice)
    local labels = {}
    for i, it in ipairs(items) do
      labels[i] = opts.format_item and opts.format_item(it) or tostring(it)
    end
    table.insert(H.selects, { items = items, labels = labels, prompt = opts.prompt, kind = opts.kind })
    out(("  select %q: %s"):format(tostring(opts.prompt), table.concat(labels, " / ")))
    local pick = choose(items, opts)
    local idx
    for i, it in ipairs(items) do
      if it == pick then
        idx = i
      end
    end
    vim.schedule(function()
      on_choice(pick, idx)
    end)
  end
end

--- Run the scenario body; an error inside it is a failure, not a crash without transcript.
---@param body fun()
function H.run(body)
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    H.fail("scenario raised an error", err)
  end
  H.finish()
end

--- Print the verdict and exit (non-zero on any failure).
function H.finish()
  -- Leave the daemon running (the test runner stops it); close our connection cleanly.
  local Client = package.loaded["orch.client"]
  if Client then
    for _, conn in pairs(Client.conns) do
      pcall(conn.stop, conn)
    end
    vim.wait(2000, function()
      return #vim.lsp.get_clients({ name = "orch" }) == 0
    end, 20)
  end
  if H.failures > 0 then
    out(("%d check(s) failed"):format(H.failures))
    os.exit(1)
  end
  out("all checks passed")
  os.exit(0)
end

return H
