--- What the daemon sends unasked, per connection: `orch/event` (applied to the state, then turned
--- into the notifications that matter), `orch/terminal/output` (to attached views),
--- `window/showMessageRequest` (a pending decision, answered through `vim.ui.select`), `$/progress`
--- and `window/logMessage`. Handlers never block the editor: a decision prompt yields its coroutine
--- until the person answers.

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

---@class orch.DecisionPrompt
---@field conn orch.Conn
---@field co thread the server-request coroutine waiting for the answer
---@field key string the decision id, else the message: several requests for one decision share it
---@field decision_id? string
---@field params table ShowMessageRequestParams
---@field done boolean

--- Decision requests waiting for an answer, oldest first.
---@type orch.DecisionPrompt[]
M.waiting = {}
--- Keys whose `vim.ui.select` is open, so a repeated offer (after a reconnect) does not ask twice.
---@type table<string, boolean>
M.asking = {}

---@param conn orch.Conn
---@return table<string, lsp.Handler>
function M.new(conn)
  return {
    ["orch/event"] = function(_, params)
      M.on_event(conn, params)
    end,
    ["orch/terminal/output"] = function(_, params)
      require("orch.ui.term").on_output(conn, params)
    end,
    ["window/showMessageRequest"] = function(_, params)
      return M.on_decision_request(conn, params)
    end,
    ["window/showMessage"] = function(_, params)
      if type(params) == "table" and params.message then
        Util.notify(params.message, M.level(params.type))
      end
    end,
    ["window/logMessage"] = function(_, params)
      M.on_log(conn, params)
    end,
    ["$/progress"] = function(err, params, ctx)
      if type(params) == "table" and params.token ~= nil then
        conn.state.progress[params.token] = type(params.value) == "table" and params.value or nil
        if type(params.value) == "table" and params.value.kind == "end" then
          conn.state.progress[params.token] = nil
        end
      end
      -- The stock handler feeds `LspProgress` and `vim.lsp.status()`, which progress UIs use.
      pcall(vim.lsp.handlers["$/progress"], err, params, ctx)
    end,
  }
end

--- An LSP MessageType as a vim.log.levels value.
---@param t integer?
function M.level(t)
  return ({ vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG })[t or 3]
    or vim.log.levels.INFO
end

---@param conn orch.Conn
---@param params table
function M.on_log(conn, params)
  if type(params) ~= "table" then
    return
  end
  conn.state.logs = conn.state.logs or {}
  table.insert(conn.state.logs, params)
  if #conn.state.logs > 200 then
    table.remove(conn.state.logs, 1)
  end
  local lvl = Config.notify.levels.log
  local level = M.level(params.type)
  if Config.notify.enabled and lvl and level >= lvl then
    Util.notify("daemon: " .. tostring(params.message), level)
  end
end

---@param conn orch.Conn
---@param params {subscriptionId: any, event: orch.Event}
function M.on_event(conn, params)
  local ev = type(params) == "table" and params.event
  if type(ev) ~= "table" then
    return
  end
  local state = conn.state
  local applied = state:apply(ev)
  if not applied then
    return
  end
  if ev.kind == "decision.resolved" then
    M.stale(ev.subject)
  end
  local history = state:is_history(ev)
  local fresh = ev.kind == "agent.spawned" or ev.kind == "agent.restarted" or ev.kind == "agent.adopted"
  -- A worktree made, checked out again, merged or removed changes the Agent's `worktree`.
  local worktree = vim.startswith(ev.kind or "", "worktree.") and ev.kind ~= "worktree.changed"
  local about_agent = vim.startswith(ev.kind or "", "agent.") or vim.startswith(ev.kind or "", "worktree.")
  if not history and about_agent and (fresh or worktree or not state.agents[ev.subject]) then
    -- Event data carries the daemon's record, not the wire Agent: fetch the Agent itself (also
    -- for an agent we have not seen yet, spawned by another client before our list). History
    -- needs no fetch: the agent list that follows the subscription has every agent.
    conn:request("orch/agent/get", { id = ev.subject }, function(err, agent)
      if err or type(agent) ~= "table" then
        return
      end
      state:put_agent(agent)
      local Term = package.loaded["orch.ui.term"]
      if Term and ev.kind == "agent.restarted" then
        Term.retarget(conn, agent)
      end
    end)
  end
  if not history then
    M.notify_event(conn, ev)
    local Term = package.loaded["orch.ui.term"]
    local s = type(ev.data) == "table" and ev.data.state
    if Term and ev.kind == "agent.state" and (s == "exited" or s == "failed" or s == "stopped" or s == "lost") then
      Term.annotate(conn, ev.subject, "agent " .. s)
    end
  end
end

--- The name of the agent an event is about, for a message.
---@param conn orch.Conn
---@param id string
local function agent_name(conn, id)
  local a = conn.state.agents[id]
  return a and a.name or id
end

---@param name string key of `notify.levels`
---@param msg string
local function say(name, msg)
  local level = Config.notify.levels[name]
  if Config.notify.enabled and level then
    Util.notify(msg, level)
  end
end

--- Turn one new event into the notification a person wants, if any.
---@param conn orch.Conn
---@param ev orch.Event
function M.notify_event(conn, ev)
  local data = type(ev.data) == "table" and ev.data or {}
  if ev.kind == "agent.state" then
    local name = agent_name(conn, ev.subject)
    local why = data.evidence and (" (" .. tostring(data.evidence) .. ")") or ""
    local agent = conn.state.agents[ev.subject]
    if data.state == "waiting" then
      say("waiting", ("%s is waiting for you%s"):format(name, why))
    elseif data.state == "failed" then
      say("failed", ("%s failed%s"):format(name, why))
    elseif data.state == "exited" then
      local code = agent and agent.exitCode
      if code ~= nil and code ~= 0 and code ~= vim.NIL then
        say("failed", ("%s exited with status %s%s"):format(name, tostring(code), why))
      else
        say("exited", ("%s exited%s"):format(name, why))
      end
    elseif data.state == "lost" then
      say("lost", ("%s was lost%s"):format(name, why))
    elseif data.state == "unreachable" then
      say("lost", ("%s is unreachable%s"):format(name, why))
    end
  elseif ev.kind == "task.state" then
    local task = conn.state.tasks[ev.subject]
    local title = task and task.title or ev.subject
    if data.state == "done" then
      say("task_done", ("task done: %s"):format(title))
    elseif data.state == "failed" or data.state == "escalated" then
      local why = data.evidence and (" (" .. tostring(data.evidence) .. ")") or ""
      say("task_failed", ("task %s: %s%s"):format(data.state, title, why))
    end
  elseif ev.kind == "decision.requested" then
    local d = conn.state.decisions[ev.subject]
    local title = (d and d.title) or data.title or ev.subject
    local hint = Config.decisions.prompt and "" or " (answer with :Orch decide)"
    say("decision", ("decision pending: %s%s"):format(title, hint))
  end
end

--- The decision a `window/showMessageRequest` is about.
---@param conn orch.Conn
---@param params table
---@return table?
function M.match_decision(conn, params)
  local id = params.decisionId
    or vim.tbl_get(params, "data", "decisionId")
    or vim.tbl_get(params, "data", "id")
    or vim.tbl_get(params, "decision", "id")
  if type(id) == "string" then
    return conn.state.decisions[id] or { id = id }
  end
  local best
  for _, d in pairs(conn.state.decisions) do
    if d.state ~= "resolved" and type(d.title) == "string" and d.title ~= "" then
      if params.message and params.message:find(d.title, 1, true) then
        if not best or (d.createdAt or "") > (best.createdAt or "") then
          best = d
        end
      end
    end
  end
  return best
end

--- Answer every waiting request for `key` with `action` (an item of `actions`, or vim.NIL).
---@param key string
---@param action table|userdata
function M.answer(key, action)
  for i = #M.waiting, 1, -1 do
    local w = M.waiting[i]
    if w.key == key and not w.done then
      w.done = true
      table.remove(M.waiting, i)
      vim.schedule(function()
        coroutine.resume(w.co, action)
      end)
    end
  end
end

--- The decision was resolved (here or elsewhere): open requests for it are stale.
---@param decision_id string
function M.stale(decision_id)
  local keys = {}
  for _, w in ipairs(M.waiting) do
    if w.decision_id == decision_id or w.key == decision_id then
      keys[w.key] = true
    end
  end
  for key in pairs(keys) do
    M.answer(key, vim.NIL)
  end
end

--- Ask the person about the waiting request `w` with `vim.ui.select`.
---@param w orch.DecisionPrompt
function M.prompt(w)
  if M.asking[w.key] then
    return
  end
  M.asking[w.key] = true
  local actions = w.params.actions or {}
  -- The message is the decision's title, then its detail after a blank line: a select prompt
  -- is one line.
  local prompt = vim.split(tostring(w.params.message or "orch decision"), "\n", { trimempty = true })[1]
  vim.ui.select(actions, {
    prompt = prompt or "orch decision",
    kind = "orch.decision",
    format_item = function(a)
      return a.title
    end,
  }, function(choice)
    M.asking[w.key] = nil
    if not choice then
      -- Dismissed: the request stays open; `:Orch decide` can still answer the decision.
      return
    end
    local open = vim.iter(M.waiting):any(function(x)
      return x.key == w.key and not x.done
    end)
    if open then
      -- The first answer from any client wins; a stale one is ignored by the daemon.
      M.answer(w.key, { title = choice.title })
    else
      local d = w.decision_id and w.conn.state.decisions[w.decision_id]
      local by = d and d.choice and (": " .. tostring(d.choice)) or ""
      Util.warn(("decision \"%s\" was already answered elsewhere%s"):format(prompt or "?", by))
    end
  end)
end

--- `window/showMessageRequest`: a pending decision. Runs in the server-request coroutine and
--- yields until answered, so the editor never blocks.
---@param conn orch.Conn
---@param params table
function M.on_decision_request(conn, params)
  local co, is_main = coroutine.running()
  if type(params) ~= "table" or not co or is_main then
    return vim.NIL
  end
  local decision = M.match_decision(conn, params)
  ---@type orch.DecisionPrompt
  local w = {
    conn = conn,
    co = co,
    key = decision and decision.id or tostring(params.message),
    decision_id = decision and decision.id,
    params = params,
    done = false,
  }
  table.insert(M.waiting, w)
  if Config.decisions.prompt then
    M.prompt(w)
  end
  return coroutine.yield()
end

--- Requests waiting for `conn` (for `:Orch decide` and tests).
---@return orch.DecisionPrompt[]
function M.pending()
  return vim.tbl_filter(function(w)
    return not w.done
  end, M.waiting)
end

return M
