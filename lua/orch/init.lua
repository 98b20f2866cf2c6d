--- orch.nvim: run and watch AI coding agents from Neovim, through the per-workspace `orch` daemon.
---
--- The public API. Every function here is what one `:Orch` subcommand does; `commands.lua` only
--- parses arguments and calls these. Nothing connects until one of them is first used, and the
--- statusline component never connects at all.
---
--- Module map: config (options), client (the LSP connection per workspace, reconnects), state (the
--- cache fed by events), handlers (what the daemon sends unasked, notifications, decisions),
--- ui/list, ui/term, ui/events, ui/diff, ui/pick (views and pickers), commands (`:Orch`), health.

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

--- Configure the plugin. Bad options are reported, naming the option, and the defaults kept.
---@param opts? orch.Config|table
---@return boolean ok
function M.setup(opts)
  local ok, errors = Config.setup(opts)
  for _, e in ipairs(errors) do
    vim.schedule(function()
      vim.notify(e, vim.log.levels.ERROR, { title = "orch" })
    end)
  end
  M._keymaps()
  return ok
end

--- Global keymaps from `keymaps = { <subcommand> = <lhs> }`.
function M._keymaps()
  if type(Config.keymaps) ~= "table" then
    return
  end
  for sub, lhs in pairs(Config.keymaps) do
    vim.keymap.set("n", lhs, function()
      vim.cmd("Orch " .. sub)
    end, { desc = "orch: " .. sub })
  end
end

--- Agent counts by state, e.g. `2 busy 1 waiting`. Cached: recomputed only after an agent event;
--- empty while nothing is connected (it never starts a connection).
---@return string
function M.statusline()
  local Client = package.loaded["orch.client"]
  local conn = Client and Client.current
  if not conn then
    return ""
  end
  return conn.state:statusline()
end

--- The connection for the current workspace (created on first use).
---@return orch.Conn
function M.conn()
  return require("orch.client").get()
end

--- Send any request to the daemon: `cb(err, result)`.
---@param method string
---@param params? table
---@param cb? fun(err: any, result: any)
function M.request(method, params, cb)
  M.conn():request(method, params, cb)
end

--- Call `fn(agent)` with the agent `ref` (name or id) fetched fresh, or picked when `ref` is nil.
---@param ref string?
---@param prompt string
---@param fn fun(agent: orch.Agent)
---@param filter? fun(a: orch.Agent): boolean
function M._with_agent(ref, prompt, fn, filter)
  local conn = M.conn()
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(conn, { prompt = prompt, filter = filter }, fn)
    return
  end
  conn:request("orch/agent/get", { id = ref }, function(err, agent)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state:put_agent(agent)
    fn(agent)
  end)
end

local function alive(a)
  return a.state ~= "exited" and a.state ~= "failed" and a.state ~= "stopped" and a.state ~= "lost"
end

--- Whether the agent runs in a git worktree of its own.
---@param a orch.Agent
local function has_worktree(a)
  return type(a.worktree) == "table"
end
M._has_worktree = has_worktree

--- Spawn an agent of `kind` (picked when nil); with `worktree`, in a git worktree of its own
--- (`true`, or `{branch?, base?}`).
---@param kind? string
---@param opts? {name?: string, worktree?: boolean|{branch?: string, base?: string}, cb?: fun(agent: orch.Agent)}
function M.spawn(kind, opts)
  opts = opts or {}
  local conn = M.conn()
  if kind == nil or kind == "" then
    require("orch.ui.pick").kind(conn, function(k)
      M.spawn(k, opts)
    end)
    return
  end
  local params = { kind = kind, name = opts.name, worktree = opts.worktree or nil }
  conn:request("orch/agent/spawn", params, function(err, agent)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state:put_agent(agent)
    local where = has_worktree(agent) and (" on " .. tostring(agent.worktree.branch)) or ""
    Util.info(("spawned %s (%s)%s"):format(agent.name or agent.id, kind, where))
    if opts.cb then
      opts.cb(agent)
    end
  end)
end

--- Open the agents list.
function M.list()
  require("orch.ui.list").open(M.conn())
end

--- Attach a terminal view to an agent (picked when nil).
---@param ref? string
function M.attach(ref)
  M._with_agent(ref, "orch: attach to which agent?", function(agent)
    require("orch.ui.term").attach(M.conn(), agent)
  end)
end

--- Send text to an agent (picked when nil; asked for when `text` is nil).
---@param ref? string
---@param text? string
---@param opts? {submit?: boolean}
function M.send(ref, text, opts)
  opts = opts or {}
  local submit = opts.submit
  if submit == nil then
    submit = Config.send.submit
  end
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(M.conn(), { prompt = "orch: send to which agent?", filter = alive }, function(a)
      M.send(a.name, text, opts)
    end)
    return
  end
  if text == nil then
    vim.ui.input({ prompt = ("send to %s: "):format(ref) }, function(input)
      if input and input ~= "" then
        M.send(ref, input, opts)
      end
    end)
    return
  end
  M.conn():request("orch/agent/send", { id = ref, text = text, submit = submit }, function(err)
    if err then
      Util.error(Util.err_message(err))
    end
  end)
end

--- Stop an agent (picked when nil).
---@param ref? string
---@param opts? {force?: boolean}
function M.stop(ref, opts)
  opts = opts or {}
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(M.conn(), { prompt = "orch: stop which agent?", filter = alive }, function(a)
      M.stop(a.name, opts)
    end)
    return
  end
  local conn = M.conn()
  conn:request("orch/agent/stop", { id = ref, force = opts.force or nil }, function(err, agent)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state:put_agent(agent)
    Util.info(("stopped %s"):format(agent and agent.name or ref))
  end)
end

--- Restart an agent (picked when nil). An attached view follows it to its new terminal.
---@param ref? string
function M.restart(ref)
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(M.conn(), { prompt = "orch: restart which agent?" }, function(a)
      M.restart(a.name)
    end)
    return
  end
  local conn = M.conn()
  conn:request("orch/agent/restart", { id = ref }, function(err, agent)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state:put_agent(agent)
    require("orch.ui.term").retarget(conn, agent)
    Util.info(("restarted %s"):format(agent.name or ref))
  end)
end

--- Review what an agent's worktree changed, in a tab of its own (agent picked when nil).
---@param ref? string
function M.diff(ref)
  M._with_agent(ref, "orch: review which agent's worktree?", function(agent)
    require("orch.ui.diff").open(M.conn(), agent)
  end, has_worktree)
end

--- Land an agent's worktree in its base (agent picked when nil). `strategy`: `merge` (default),
--- `squash` or `rebase`. A conflict names the files; the workspace is left as it was.
---@param ref? string
---@param strategy? "merge"|"squash"|"rebase"
function M.merge(ref, strategy)
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(M.conn(), {
      prompt = "orch: merge which agent's worktree?",
      filter = function(a)
        return has_worktree(a) and not alive(a)
      end,
    }, function(a)
      M.merge(a.name, strategy)
    end)
    return
  end
  local conn = M.conn()
  conn:request("orch/agent/merge", { id = ref, strategy = strategy }, function(err, res)
    if err then
      local files = type(err) == "table" and type(err.data) == "table" and err.data.files
      local lines = { Util.err_message(err) }
      if type(files) == "table" and #files > 0 then
        lines[#lines + 1] = "files in conflict: " .. table.concat(files, ", ")
      end
      Util.error(lines)
      return
    end
    local files = type(res.files) == "table" and #res.files or 0
    Util.info(("merged %s (%s): %s, %d file%s"):format(
      ref,
      strategy or "merge",
      tostring(res.commit):sub(1, 12),
      files,
      files == 1 and "" or "s"
    ))
  end)
end

--- Remove a stopped agent's worktree and branch (agent picked when nil). Unmerged work is not
--- removed without `force`: the daemon raises a decision instead, which is asked here like any
--- decision (at once, or with `:Orch decide` when `decisions.prompt` is off).
---@param ref? string
---@param opts? {force?: boolean}
function M.discard(ref, opts)
  opts = opts or {}
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(M.conn(), {
      prompt = "orch: discard which agent's worktree?",
      filter = function(a)
        return has_worktree(a) and not alive(a)
      end,
    }, function(a)
      M.discard(a.name, opts)
    end)
    return
  end
  local conn = M.conn()
  conn:request("orch/agent/discard", { id = ref, force = opts.force or nil }, function(err)
    if not err then
      Util.info(("discarded the worktree and branch of %s"):format(ref))
      return
    end
    local msg = Util.err_message(err)
    -- The refusal names the decision it raised (`... decision d-12 asks ...`).
    local decision = msg:match("decision (%w+%-%d+)")
    if not decision then
      Util.error(msg)
      return
    end
    Util.warn(msg .. " (:Orch! discard discards without asking)")
    if not Config.decisions.prompt then
      M.decide(decision)
    end
  end)
end

--- Remove a stopped agent's checkout, keeping its branch (agent picked when nil).
---@param ref? string
function M.pause(ref)
  M._worktree_call("orch/agent/pause", ref, "pause", function(a)
    return has_worktree(a) and not a.worktree.paused and not alive(a)
  end, function(agent)
    Util.info(("paused %s: its checkout is removed, branch %s kept"):format(agent.name, tostring(agent.worktree.branch)))
  end)
end

--- Check a paused agent's branch out again and restart it there (agent picked when nil).
---@param ref? string
function M.resume(ref)
  M._worktree_call("orch/agent/resume", ref, "resume", function(a)
    return has_worktree(a) and a.worktree.paused == true
  end, function(agent)
    Util.info(("resumed %s in %s"):format(agent.name, tostring(agent.worktree.path)))
  end)
end

--- A worktree method whose result is the Agent: pick the agent when `ref` is nil.
---@param method string
---@param ref? string
---@param verb string
---@param filter fun(a: orch.Agent): boolean
---@param done fun(agent: orch.Agent)
function M._worktree_call(method, ref, verb, filter, done)
  local conn = M.conn()
  if ref == nil or ref == "" then
    require("orch.ui.pick").agent(conn, { prompt = ("orch: %s which agent?"):format(verb), filter = filter }, function(a)
      M._worktree_call(method, a.name, verb, filter, done)
    end)
    return
  end
  conn:request(method, { id = ref }, function(err, agent)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state:put_agent(agent)
    done(agent)
  end)
end

--- The daemon's status, as a notification.
function M.status()
  local conn = M.conn()
  conn:request("orch/status", {}, function(err, s)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    conn.state.status = s
    local by = {}
    for state, n in pairs(type(s.agents) == "table" and s.agents.byState or {}) do
      if n and n > 0 then
        by[#by + 1] = n .. " " .. state
      end
    end
    table.sort(by)
    local backends = {}
    for _, b in ipairs(s.backends or {}) do
      local why = b.detail and b.detail ~= "" and (": " .. b.detail) or ""
      backends[#backends + 1] = b.name .. (b.available and "" or (" (unavailable" .. why .. ")"))
    end
    local lines = {
      ("orch %s  pid %s  up %s  protocol %s"):format(
        tostring(s.version),
        tostring(s.pid),
        Util.format_age((tonumber(s.uptimeMs) or 0) / 1000),
        tostring(s.protocolVersion)
      ),
      "workspace: " .. tostring(s.workspace),
      ("agents: %s%s"):format(
        tostring(type(s.agents) == "table" and s.agents.total or 0),
        #by > 0 and (" (" .. table.concat(by, ", ") .. ")") or ""
      ),
      ("clients: %s  last event: %s"):format(tostring(s.clients), tostring(s.lastSeq)),
      "backends: " .. table.concat(backends, ", "),
    }
    if type(s.store) == "table" then
      local kib = math.floor((s.store.sizeBytes or 0) / 1024)
      lines[#lines + 1] = ("store: %s (%d KiB)"):format(tostring(s.store.path), kib)
    end
    Util.info(lines)
  end)
end

--- Open the event log.
function M.events()
  require("orch.ui.events").open(M.conn())
end

--- Show a task in a scratch window.
---@param task table
function M._task_details(task)
  local lines = {
    "# " .. tostring(task.title),
    "",
    ("id: %s  state: %s  priority: %s  attempts: %s/%s"):format(
      task.id,
      tostring(task.state),
      tostring(task.priority),
      tostring(task.attempts),
      tostring(task.maxAttempts)
    ),
    "agent: " .. tostring(task.agentId ~= vim.NIL and task.agentId or "-"),
    "",
    "## Prompt",
    "",
  }
  vim.list_extend(lines, vim.split(tostring(task.prompt or ""), "\n"))
  if type(task.gates) == "table" and #task.gates > 0 then
    vim.list_extend(lines, { "", "## Gates", "" })
    for _, g in ipairs(task.gates) do
      lines[#lines + 1] = ("- %s: %s"):format(g.name, table.concat(g.command or {}, " "))
    end
  end
  if type(task.gateResults) == "table" and #task.gateResults > 0 then
    vim.list_extend(lines, { "", "## Gate results", "" })
    for _, r in ipairs(task.gateResults) do
      lines[#lines + 1] = ("- %s (attempt %s): %s, exit %s, %s ms"):format(
        r.name,
        tostring(r.attempt),
        r.ok and "ok" or "FAILED",
        tostring(r.exitCode),
        tostring(r.durationMs)
      )
      for _, l in ipairs(vim.split(tostring(r.outputTail or ""), "\n", { trimempty = true })) do
        lines[#lines + 1] = "    " .. l
      end
    end
  end
  local buf = Util.scratch("orch://task/" .. task.id, "markdown")
  vim.bo[buf].bufhidden = "wipe"
  Util.set_lines(buf, lines)
  Util.open_win(buf, Config.win.details, task.title)
  vim.keymap.set("n", "q", "<cmd>close<cr>", { buffer = buf, nowait = true })
end

--- Pick a task, then what to do with it.
function M.tasks()
  local conn = M.conn()
  local Pick = require("orch.ui.pick")
  Pick.task(conn, function(task)
    local actions = { "details", "assign", "complete", "cancel" }
    Pick.select(actions, { prompt = ("task %s:"):format(task.title), kind = "orch.task_action" }, function(action)
      if action == "details" then
        M._task_details(task)
      elseif action == "assign" then
        Pick.agent(conn, { prompt = "orch: assign to which agent?", filter = alive }, function(a)
          conn:request("orch/task/assign", { id = task.id, agentId = a.id })
        end)
      else
        conn:request("orch/task/" .. action, { id = task.id }, function(err, t)
          if err then
            Util.error(Util.err_message(err))
          elseif not vim.tbl_contains({ "done", "failed", "escalated" }, t.state) then
            -- Those outcomes are notified from their task.state event already.
            Util.info(("task %s: %s"):format(t.title or task.title, t.state or action))
          end
        end)
      end
    end)
  end)
end

--- Create a task: title and prompt asked when missing, then an agent (or none) picked.
---@param title? string
function M.task_new(title)
  local conn = M.conn()
  local function create(t, prompt, agent)
    conn:request("orch/task/create", { title = t, prompt = prompt, agentId = agent }, function(err, task)
      if err then
        Util.error(Util.err_message(err))
        return
      end
      conn.state.tasks[task.id] = task
      Util.info(("task created: %s (%s)"):format(task.title, task.state))
    end)
  end
  local function with_title(t)
    vim.ui.input({ prompt = "task prompt: ", default = t }, function(prompt)
      if not prompt or prompt == "" then
        return
      end
      conn:request("orch/agent/list", { limit = 1000 }, function(err, res)
        local agents = vim.tbl_filter(alive, not err and res and res.items or {})
        local items = { { name = "(leave unassigned)" } }
        vim.list_extend(items, agents)
        require("orch.ui.pick").select(items, {
          prompt = "orch: give the task to",
          kind = "orch.agent",
          format_item = function(a)
            return a.id and require("orch.ui.pick").format_agent(a) or a.name
          end,
        }, function(a)
          create(t, prompt, a.id)
        end)
      end)
    end)
  end
  if title and title ~= "" then
    with_title(title)
  else
    vim.ui.input({ prompt = "task title: " }, function(t)
      if t and t ~= "" then
        with_title(t)
      end
    end)
  end
end

--- Answer a pending decision (picked when `id` is nil).
---@param id? string
function M.decide(id)
  local conn = M.conn()
  local function answer(d)
    require("orch.ui.pick").select(d.options or {}, {
      prompt = tostring(d.title) .. (d.detail and d.detail ~= vim.NIL and d.detail ~= "" and (": " .. d.detail) or ""),
      kind = "orch.decision",
    }, function(choice)
      conn:request("orch/decision/resolve", { id = d.id, choice = choice }, function(err, res)
        if err then
          Util.error(Util.err_message(err))
          return
        end
        Util.info(("decided %s: %s"):format(res and res.title or d.title, choice))
      end)
    end)
  end
  if id and id ~= "" then
    conn:request("orch/decision/list", { limit = 1000 }, function(err, res)
      for _, d in ipairs(not err and res and res.items or {}) do
        if d.id == id then
          return answer(d)
        end
      end
      Util.error(err and Util.err_message(err) or ("decision %s not found"):format(id))
    end)
    return
  end
  require("orch.ui.pick").decision(conn, answer)
end

--- The commands, as a notification.
function M.help()
  Util.info(require("orch.commands").help_lines())
end

return M
