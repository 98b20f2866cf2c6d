--- The connection to one workspace's daemon, through Neovim's own LSP client running `orch lsp`
--- (a stdio forwarder that starts the daemon when none runs). One `Conn` per workspace root.
---
--- A `Conn` owns the LSP client's lifetime: it queues requests until `initialize` is answered,
--- subscribes to events from the last `seq` it applied, restarts the client with backoff when it
--- dies (daemon killed or restarted), and fails the requests that were in flight. It knows nothing
--- about windows; views register with `state:on()` and `conn.terms`.

local Config = require("orch.config")
local State = require("orch.state")
local Util = require("orch.util")

local M = {}

---@type table<string, orch.Conn> by workspace root
M.conns = {}
--- The connection used last; the statusline reads it without touching the file system.
---@type orch.Conn?
M.current = nil

local ERR_LOST = -32099

---@class orch.Conn
---@field root string the workspace root (absolute, resolved)
---@field state orch.State
---@field client_id? integer the live LSP client
---@field initialized boolean `initialize` answered on the live client
---@field server_info? table `serverInfo` and `capabilities.experimental.orch` of the live client
---@field subscription? any the live event subscription id
---@field attempts integer failed (re)connection attempts in a row
---@field stopping boolean an intentional stop: no reconnect
---@field connects integer successful connections so far (1 after the first)
---@field terms table<string, orch.Term> attached terminal views by terminal id
---@field private _queue {method: string, params: table, cb: fun(err: any, result: any)}[]
---@field private _pending table<integer, fun(err: any, result: any)> in-flight requests
---@field private _next integer
---@field private _timer? uv.uv_timer_t
local Conn = {}
Conn.__index = Conn
M.Conn = Conn

--- The workspace root for the current buffer/cwd, as configured.
---@return string
function M.root()
  local root = Config.root
  if type(root) == "function" then
    root = root()
  end
  -- The same rule as the orch CLI, so that editor and CLI talk to the same daemon.
  if type(root) ~= "string" or root == "" then
    root = os.getenv("ORCH_WORKSPACE")
  end
  if type(root) ~= "string" or root == "" then
    -- Nested: the markers have equal priority, the nearest directory holding any of them wins.
    root = vim.fs.root(vim.fn.getcwd(), { Config.root_markers }) or vim.fn.getcwd()
  end
  -- Canonical, as the daemon keys its workspaces: one connection per real directory.
  root = vim.uv.fs_realpath(vim.fn.fnamemodify(root, ":p")) or vim.fn.fnamemodify(root, ":p")
  return (vim.fs.normalize(root):gsub("(.)/$", "%1"))
end

--- The environment for `orch` processes serving `root`.
---@param root string
---@return table<string, string>
function M.env(root)
  return vim.tbl_extend("force", Config.env or {}, { ORCH_WORKSPACE = root })
end

--- The connection for `root` (default: the current workspace), created but not started.
---@param root? string
---@return orch.Conn
function M.get(root)
  root = root or M.root()
  local conn = M.conns[root]
  if not conn then
    conn = Conn.new(root)
    M.conns[root] = conn
  end
  M.current = conn
  return conn
end

--- The connection for `root` if one exists; never creates or starts one.
---@param root? string
---@return orch.Conn?
function M.peek(root)
  return M.conns[root or M.root()]
end

---@param root string
---@return orch.Conn
function Conn.new(root)
  return setmetatable({
    root = root,
    state = State.new(),
    initialized = false,
    attempts = 0,
    stopping = false,
    connects = 0,
    terms = {},
    _queue = {},
    _pending = {},
    _next = 0,
  }, Conn)
end

---@return vim.lsp.Client?
function Conn:client()
  return self.client_id and vim.lsp.get_client_by_id(self.client_id) or nil
end

function Conn:is_connected()
  local c = self:client()
  return c ~= nil and self.initialized and not c:is_stopped()
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  -- Decisions arrive as window/showMessageRequest and task progress as $/progress only for
  -- clients that say they handle them.
  caps.window = caps.window or {}
  caps.window.showMessage = { messageActionItem = { additionalPropertiesSupport = true } }
  caps.window.workDoneProgress = true
  caps.experimental = { orch = { client = "nvim", version = 1 } }
  return caps
end

--- Start the LSP client unless one is running or starting.
function Conn:start()
  if self.client_id and self:client() then
    return
  end
  self.stopping = false
  local cmd = Config.cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    -- Each waiting request reports this to whoever made it.
    self:_fail_all(("orch: `%s` is not executable: install orch or set the option 'cmd'"):format(cmd[1]))
    return
  end
  local Handlers = require("orch.handlers")
  local id = vim.lsp.start({
    name = "orch",
    cmd = cmd,
    cmd_cwd = self.root,
    -- Pin the forwarder to our root, whatever its own cwd-based guess would be.
    cmd_env = M.env(self.root),
    root_dir = self.root,
    workspace_folders = { { uri = vim.uri_from_fname(self.root), name = self.root } },
    capabilities = capabilities(),
    handlers = Handlers.new(self),
    on_init = function(client, result)
      self:_on_init(client, result)
    end,
    on_exit = function(code, signal, client_id)
      vim.schedule(function()
        self:_on_exit(code, signal, client_id)
      end)
    end,
  }, {
    attach = false,
    silent = true,
    -- We keep one client per root ourselves; never adopt a client that is shutting down.
    reuse_client = function()
      return false
    end,
  })
  if not id then
    self:_fail_all("orch: could not start " .. table.concat(cmd, " "))
    self:_schedule_reconnect()
    return
  end
  self.client_id = id
end

--- Stop the connection for good (no reconnect). The daemon and its agents keep running.
function Conn:stop()
  self.stopping = true
  if self._timer then
    self._timer:stop()
    self._timer:close()
    self._timer = nil
  end
  local c = self:client()
  if c then
    c:stop()
  end
end

---@param client vim.lsp.Client
---@param result table
function Conn:_on_init(client, result)
  if client.id ~= self.client_id then
    return
  end
  self.initialized = true
  self.attempts = 0
  self.connects = self.connects + 1
  self.server_info = {
    name = result.serverInfo and result.serverInfo.name,
    version = result.serverInfo and result.serverInfo.version,
    orch = vim.tbl_get(result, "capabilities", "experimental", "orch"),
  }
  if self.connects > 1 then
    Util.info(("reconnected to the daemon of %s"):format(self.root))
  end
  -- Subscribe first so that the queued requests' effects (a spawn) arrive as events after it.
  self:_subscribe()
  self:_flush()
end

--- Subscribe to every event after the last one applied, then refresh what a replay cannot tell
--- (agents that existed before the first event we saw).
function Conn:_subscribe()
  local state = self.state
  local function subscribe(since)
    self:request("orch/events/subscribe", { since = since }, function(err, res)
      if err then
        Util.error("event subscription failed: " .. Util.err_message(err))
        return
      end
      self.subscription = res.subscriptionId
      if state.last_seq == nil then
        state.last_seq = since
      end
      self:refresh_agents()
      for _, term in pairs(self.terms) do
        require("orch.ui.term").resubscribe(self, term)
      end
    end)
  end
  if state.last_seq ~= nil then
    subscribe(state.last_seq)
    return
  end
  -- First connection: history up to now is shown in `:Orch events` but not notified.
  self:request("orch/status", {}, function(err, status)
    if err then
      Util.error("orch/status failed: " .. Util.err_message(err))
      return
    end
    state.status = status
    local last = tonumber(status.lastSeq) or 0
    state.live_from = last
    subscribe(math.max(0, last - Config.events.history))
  end)
end

--- Fetch the agent list and replace the cache.
---@param cb? fun()
function Conn:refresh_agents(cb)
  self:request("orch/agent/list", { limit = 1000 }, function(err, res)
    if not err and res then
      self.state:set_agents(res.items or {})
    end
    if cb then
      cb()
    end
  end)
end

---@param code integer
---@param signal integer
---@param client_id integer
function Conn:_on_exit(code, signal, client_id)
  if client_id ~= self.client_id then
    return
  end
  self.client_id = nil
  self.initialized = false
  self.subscription = nil
  if self.stopping then
    -- Our own stop: nobody waits for these answers any more.
    self._pending, self._queue = {}, {}
    return
  end
  self:_fail_all("orch: connection to the daemon lost (exit " .. tostring(code) .. ")")
  self:_schedule_reconnect()
end

function Conn:_schedule_reconnect()
  local r = Config.reconnect
  if not r.enabled or self.stopping then
    return
  end
  self.attempts = self.attempts + 1
  if r.max_attempts > 0 and self.attempts > r.max_attempts then
    self.attempts = 0
    Util.error(("cannot reach the daemon of %s (see :checkhealth orch and :LspLog)"):format(self.root))
    return
  end
  local delay = math.min(r.max_ms, r.initial_ms * 2 ^ (self.attempts - 1))
  if self._timer then
    self._timer:stop()
  else
    self._timer = vim.uv.new_timer()
  end
  self._timer:start(
    math.floor(delay),
    0,
    vim.schedule_wrap(function()
      if not self.stopping and not self:client() then
        self:start()
      end
    end)
  )
end

---@param msg string
function Conn:_fail_all(msg)
  local err = { code = ERR_LOST, message = msg }
  local pending, queue = self._pending, self._queue
  self._pending, self._queue = {}, {}
  for _, cb in pairs(pending) do
    pcall(cb, err, nil)
  end
  for _, q in ipairs(queue) do
    pcall(q.cb, err, nil)
  end
end

function Conn:_flush()
  local queue = self._queue
  self._queue = {}
  for _, q in ipairs(queue) do
    self:request(q.method, q.params, q.cb)
  end
end

--- Send a request; `cb(err, result)` runs on the main loop. Starts the connection on first use and
--- queues until `initialize` is answered.
---@param method string
---@param params? table
---@param cb? fun(err: any, result: any) default: show errors with vim.notify
function Conn:request(method, params, cb)
  M.current = self
  cb = cb
    or function(err)
      if err then
        Util.error(Util.err_message(err))
      end
    end
  -- An empty Lua table would encode as `[]`; the daemon expects an object.
  if params == nil or (type(params) == "table" and next(params) == nil) then
    params = vim.empty_dict()
  end
  if not self:is_connected() then
    table.insert(self._queue, { method = method, params = params, cb = cb })
    self:start()
    return
  end
  local client = assert(self:client())
  self._next = self._next + 1
  local key = self._next
  self._pending[key] = cb
  local ok = client:request(method, params, function(err, result)
    local f = self._pending[key]
    self._pending[key] = nil
    if f then
      f(err, result)
    end
  end)
  if not ok then
    self._pending[key] = nil
    cb({ code = ERR_LOST, message = "orch: the daemon connection is closed" }, nil)
  end
end

--- A request that waits (on the main loop only). Returns `result, err`.
---@param method string
---@param params? table
---@param timeout_ms? integer
---@return any result
---@return any err
function Conn:request_sync(method, params, timeout_ms)
  local done, res, e = false, nil, nil
  self:request(method, params, function(err, result)
    done, res, e = true, result, err
  end)
  if not vim.wait(timeout_ms or 5000, function()
    return done
  end, 10) then
    return nil, { message = ("orch: %s timed out"):format(method) }
  end
  return res, e
end

--- Send a notification (dropped when not connected).
---@param method string
---@param params? table
function Conn:notify(method, params)
  local c = self:client()
  if c and self.initialized then
    c:notify(method, params or vim.empty_dict())
  end
end

--- Agent kinds of the workspace (keys of the config's `agents` table), cached.
---@param timeout_ms? integer
---@return string[]
function Conn:kinds(timeout_ms)
  if self.state.kinds then
    return self.state.kinds
  end
  local res = self:request_sync("orch/config/get", {}, timeout_ms or 2000)
  if type(res) == "table" and type(res.agents) == "table" then
    local kinds = vim.tbl_keys(res.agents)
    table.sort(kinds)
    self.state.kinds = kinds
    return kinds
  end
  return { "aider", "claude", "codex", "gemini", "shell" }
end

-- Neovim stops its LSP clients when it exits; that is not a reason to reconnect.
vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("orch.client", { clear = true }),
  callback = function()
    for _, conn in pairs(M.conns) do
      conn.stopping = true
    end
  end,
})

return M
