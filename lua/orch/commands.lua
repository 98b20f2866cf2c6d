--- The `:Orch` command: one table of subcommands drives dispatch, completion and help. A
--- subcommand parses its arguments and calls the matching function of `require("orch")`; when an
--- argument it needs is missing, that function asks with a picker.

local M = {}

---@class orch.Subcommand
---@field desc string
---@field usage? string arguments, for help
--- Candidates for the argument being typed; `args` are the arguments before it.
---@field complete? fun(lead: string, args: string[]): string[]
---@field run? fun(args: string[], cmd: table)
---@field sub? table<string, orch.Subcommand> nested subcommands (`task new`)

local function orch()
  return require("orch")
end

--- Agent names for completion (and ids, when an agent has no name); `filter` narrows them.
---@param filter? fun(a: orch.Agent): boolean
---@return string[]
function M.agent_names(filter)
  local Client = require("orch.client")
  local conn = Client.get()
  local state = conn.state
  if not conn:is_connected() or vim.tbl_isempty(state.agents) then
    local res = conn:request_sync("orch/agent/list", { limit = 1000 }, 2000)
    if type(res) == "table" and res.items then
      state:set_agents(res.items)
    end
  end
  local names = {}
  for _, a in ipairs(state:agent_list()) do
    if not filter or filter(a) then
      names[#names + 1] = a.name or a.id
    end
  end
  return names
end

local function complete_agent(_, args)
  if #args == 0 then
    return M.agent_names()
  end
  return {}
end

local function complete_worktree_agent(_, args)
  if #args == 0 then
    return M.agent_names(function(a)
      return type(a.worktree) == "table"
    end)
  end
  return {}
end

local STRATEGIES = { "merge", "squash", "rebase" }

--- The visual selection (or the command's range) as text.
---@param cmd table user command args
---@return string?
local function range_text(cmd)
  if not cmd or (cmd.range or 0) == 0 then
    return nil
  end
  local buf = vim.api.nvim_get_current_buf()
  local s, e = vim.api.nvim_buf_get_mark(buf, "<"), vim.api.nvim_buf_get_mark(buf, ">")
  -- A characterwise selection on the same lines as the range: send exactly what was selected.
  if s[1] == cmd.line1 and e[1] == cmd.line2 and vim.fn.visualmode() == "v" then
    local ok, region = pcall(vim.fn.getregion, vim.fn.getpos("'<"), vim.fn.getpos("'>"), { type = "v" })
    if ok then
      return table.concat(region, "\n")
    end
  end
  return table.concat(vim.api.nvim_buf_get_lines(buf, cmd.line1 - 1, cmd.line2, false), "\n")
end

---@type table<string, orch.Subcommand>
M.commands = {
  spawn = {
    desc = "start an agent of a kind from the workspace config (--worktree: in a git worktree of its own)",
    usage = "<kind> [name] [--worktree]",
    complete = function(_, args)
      if #args == 0 then
        return require("orch.client").get():kinds()
      end
      return vim.tbl_contains(args, "--worktree") and {} or { "--worktree" }
    end,
    run = function(args)
      local worktree = vim.tbl_contains(args, "--worktree")
      args = vim.tbl_filter(function(a)
        return a ~= "--worktree"
      end, args)
      orch().spawn(args[1], { name = args[2], worktree = worktree or nil })
    end,
  },
  list = {
    desc = "the agents buffer: name, kind, state, task, age (live)",
    run = function()
      orch().list()
    end,
  },
  attach = {
    desc = "show an agent's terminal; closing the window leaves it running",
    usage = "[agent]",
    complete = complete_agent,
    run = function(args)
      orch().attach(args[1])
    end,
  },
  send = {
    desc = "type text into an agent (and Enter, unless :Orch!); with a range, the selected text",
    usage = "[agent] [text]",
    complete = complete_agent,
    run = function(args, cmd)
      local text = range_text(cmd)
      if text == nil and #args > 1 then
        text = table.concat(args, " ", 2)
      end
      orch().send(args[1], text, { submit = cmd.bang and false or nil })
    end,
  },
  stop = {
    desc = "stop an agent (:Orch! stop kills it at once)",
    usage = "[agent]",
    complete = complete_agent,
    run = function(args, cmd)
      orch().stop(args[1], { force = cmd.bang })
    end,
  },
  restart = {
    desc = "restart an agent",
    usage = "[agent]",
    complete = complete_agent,
    run = function(args)
      orch().restart(args[1])
    end,
  },
  diff = {
    desc = "review an agent's worktree in a tab: its changed files, each against the base",
    usage = "[agent]",
    complete = complete_worktree_agent,
    run = function(args)
      orch().diff(args[1])
    end,
  },
  merge = {
    desc = "land a stopped agent's worktree in its base (a merge commit, squash or rebase)",
    usage = "[agent] [squash|rebase]",
    complete = function(lead, args)
      if #args == 0 then
        return complete_worktree_agent(lead, args)
      elseif #args == 1 then
        return STRATEGIES
      end
      return {}
    end,
    run = function(args)
      -- `:Orch merge squash` picks the agent.
      if #args == 1 and vim.tbl_contains(STRATEGIES, args[1]) then
        args = { nil, args[1] }
      end
      if args[2] and not vim.tbl_contains(STRATEGIES, args[2]) then
        error(("unknown strategy '%s' (merge, squash or rebase)"):format(args[2]), 0)
      end
      orch().merge(args[1], args[2])
    end,
  },
  discard = {
    desc = "remove a stopped agent's worktree and branch (unmerged work: a decision; :Orch! discard does not ask)",
    usage = "[agent]",
    complete = complete_worktree_agent,
    run = function(args, cmd)
      orch().discard(args[1], { force = cmd.bang })
    end,
  },
  pause = {
    desc = "remove a stopped agent's checkout, keeping its branch",
    usage = "[agent]",
    complete = complete_worktree_agent,
    run = function(args)
      orch().pause(args[1])
    end,
  },
  resume = {
    desc = "check a paused agent's branch out again and restart it there",
    usage = "[agent]",
    complete = complete_worktree_agent,
    run = function(args)
      orch().resume(args[1])
    end,
  },
  status = {
    desc = "the daemon's status",
    run = function()
      orch().status()
    end,
  },
  events = {
    desc = "the event log buffer (live)",
    run = function()
      orch().events()
    end,
  },
  tasks = {
    desc = "pick a task: details, assign, complete, cancel",
    run = function()
      orch().tasks()
    end,
  },
  task = {
    desc = "task commands",
    sub = {
      new = {
        desc = "create a task (title, prompt and agent are asked for)",
        usage = "[title]",
        run = function(args)
          orch().task_new(#args > 0 and table.concat(args, " ") or nil)
        end,
      },
    },
  },
  decide = {
    desc = "answer a pending decision",
    usage = "[decision-id]",
    complete = function(_, args)
      if #args > 0 then
        return {}
      end
      local ids = {}
      for id, d in pairs(require("orch.client").get().state.decisions) do
        if d.state ~= "resolved" then
          ids[#ids + 1] = id
        end
      end
      table.sort(ids)
      return ids
    end,
    run = function(args)
      orch().decide(args[1])
    end,
  },
  help = {
    desc = "this list",
    run = function()
      orch().help()
    end,
  },
}

--- Subcommand names, sorted.
---@param tbl? table<string, orch.Subcommand>
---@return string[]
function M.names(tbl)
  local names = vim.tbl_keys(tbl or M.commands)
  table.sort(names)
  return names
end

--- One line per command, for `:Orch help`.
---@return string[]
function M.help_lines()
  local rows, width = {}, 0
  local function add(prefix, tbl)
    for _, name in ipairs(M.names(tbl)) do
      local c = tbl[name]
      if c.sub then
        add(prefix .. name .. " ", c.sub)
      else
        local head = prefix .. name .. (c.usage and (" " .. c.usage) or "")
        rows[#rows + 1] = { head, c.desc }
        width = math.max(width, #head)
      end
    end
  end
  add("", M.commands)
  local lines = { "Usage: :Orch <subcommand> [args]" }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = ("  %-" .. width .. "s  %s"):format(r[1], r[2])
  end
  return lines
end

--- Find the subcommand for `args`; returns it and the remaining arguments.
---@param args string[]
---@return orch.Subcommand?
---@return string[] rest
---@return string path the subcommand's words
function M.resolve(args)
  local tbl, cmd, i, path = M.commands, nil, 1, {}
  while args[i] and tbl and tbl[args[i]] do
    cmd = tbl[args[i]]
    path[#path + 1] = args[i]
    i = i + 1
    tbl = cmd.sub
    if not tbl then
      break
    end
  end
  return cmd, vim.list_slice(args, i), table.concat(path, " ")
end

--- `:Orch` itself.
---@param cmd table user command args
function M.run(cmd)
  local Util = require("orch.util")
  if vim.fn.has("nvim-0.11") == 0 then
    Util.error("orch needs Neovim >= 0.11")
    return
  end
  local args = cmd.fargs or {}
  if #args == 0 then
    -- No subcommand: pick one.
    local items = vim.tbl_filter(function(n)
      return M.commands[n].run ~= nil
    end, M.names())
    vim.list_extend(items, { "task new" })
    table.sort(items)
    require("orch.ui.pick").select(items, {
      prompt = "orch",
      kind = "orch.command",
      format_item = function(n)
        local c = M.resolve(vim.split(n, " "))
        return ("%-10s %s"):format(n, c and c.desc or "")
      end,
    }, function(n)
      M.run({ fargs = vim.split(n, " "), range = 0, bang = cmd.bang })
    end)
    return
  end
  local sub, rest, path = M.resolve(args)
  if not sub then
    Util.error(("unknown subcommand '%s' (see :Orch help)"):format(args[1]))
    return
  end
  if not sub.run then
    local names = M.names(sub.sub)
    if #rest > 0 then
      Util.error(("unknown subcommand '%s %s' (try: %s)"):format(path, rest[1], table.concat(names, ", ")))
      return
    end
    require("orch.ui.pick").select(names, { prompt = "orch " .. path }, function(n)
      M.run({ fargs = { path, n }, range = 0, bang = cmd.bang })
    end)
    return
  end
  local ok, err = pcall(sub.run, rest, cmd)
  if not ok then
    Util.error(("%s: %s"):format(path, tostring(err)))
  end
end

--- Completion of `:Orch ...`: subcommands, then the subcommand's own arguments.
---@param lead string
---@param line string
---@param pos integer
---@return string[]
function M.complete(lead, line, pos)
  line = line:sub(1, pos)
  local s = line:find("Orch!?%s")
  if not s then
    return M.names()
  end
  local rest = line:sub(s):gsub("^Orch!?%s+", "")
  local words = vim.split(rest, "%s+", { trimempty = true })
  if lead ~= "" then
    table.remove(words) -- the word being completed
  end
  local tbl, cmd = M.commands, nil
  local i = 1
  while words[i] and tbl and tbl[words[i]] do
    cmd = tbl[words[i]]
    tbl = cmd.sub
    i = i + 1
    if not tbl then
      break
    end
  end
  local candidates
  if i <= #words and (not cmd or cmd.sub) then
    candidates = {} -- an unknown word before the one being completed
  elseif not cmd or cmd.sub then
    candidates = M.names(tbl)
  elseif cmd.complete then
    local ok, res = pcall(cmd.complete, lead, vim.list_slice(words, i))
    candidates = ok and res or {}
  else
    candidates = {}
  end
  return vim.tbl_filter(function(c)
    return vim.startswith(c, lead)
  end, candidates)
end

return M
