-- Scenario: `:Orch task new` asks for title, prompt and agent (vim.ui.input / vim.ui.select, stubbed)
-- and creates a task the CLI sees; `:Orch tasks` completes one, its gate fails, the task escalates,
-- and the escalation's decision reaches vim.ui.select; the answer resolves it. Task outcomes are
-- notified and task progress arrives as LSP `$/progress`.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

H.run(function()
  vim.fn.writefile({
    "[gates.nope]",
    [=[command = ["false"]]=],
  }, H.ws .. "/orch.toml")
  H.setup()
  local Orch = require("orch")
  local conn = Orch.conn()

  local progress = 0
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function()
      progress = progress + 1
    end,
  })

  -- Answers for the pickers, in order; each is a function of (items, opts) or a plain value.
  local inputs, picks = {}, {}
  vim.ui.input = function(opts, cb)
    local v = table.remove(inputs, 1)
    H.out(("  input %q -> %s"):format(opts.prompt, tostring(v)))
    vim.schedule(function()
      cb(v)
    end)
  end
  H.stub_select(function(items, opts)
    local pick = table.remove(picks, 1)
    if type(pick) == "function" then
      return pick(items, opts)
    end
    for _, it in ipairs(items) do
      local label = type(it) == "table" and (it.title or it.name) or it
      if label == pick then
        return it
      end
    end
  end)

  vim.cmd("Orch spawn shell")
  local agent
  H.wait("an agent is spawned", 30000, function()
    agent = conn.state:agent_list()[1]
    return agent ~= nil
  end, H.notes_text)
  if not agent then
    return
  end

  -- :Orch task new: title, prompt, then the agent.
  inputs = { "say hello", "echo hello-from-task" }
  picks = {
    function(items)
      return vim.iter(items):find(function(a)
        return a.id == agent.id
      end)
    end,
  }
  vim.cmd("Orch task new")
  local task
  H.wait(":Orch task new creates a task the CLI sees", 15000, function()
    local res = H.call("orch/task/list", {})
    task = res and vim.iter(res.items or {}):find(function(t)
      return t.title == "say hello"
    end)
    return task and task.prompt == "echo hello-from-task" and task.agentId == agent.id
  end, function()
    return vim.inspect(task) .. " | " .. H.notes_text()
  end)
  H.wait("the task creation is confirmed", 5000, function()
    return H.note("task created: say hello")
  end, H.notes_text)
  H.wait("the prompt is typed into the agent", 15000, function()
    local screen = H.call("orch/agent/screen", { id = agent.id })
    return screen and vim.iter(screen.lines or {}):any(function(l)
      return l:match("^hello%-from%-task")
    end)
  end)

  -- :Orch tasks: pick it, complete it; without gates it is done at once.
  picks = {
    function(items)
      return vim.iter(items):find(function(t)
        return t.id == task.id
      end)
    end,
    "complete",
  }
  vim.cmd("Orch tasks")
  H.wait(":Orch tasks completes the task, and its end is notified", 20000, function()
    local n = H.note("task done: say hello")
    return n and n.level == vim.log.levels.INFO
  end, H.notes_text)

  -- A task whose gate fails escalates, and its decision comes to us.
  local failing, err = H.call("orch/task/create", {
    title = "doomed",
    prompt = "echo doomed",
    agentId = agent.id,
    gates = { "nope" },
    maxAttempts = 1,
  })
  H.check("a task with a failing gate is created", failing and failing.id, err or vim.inspect(failing))
  if not failing then
    return
  end
  picks = {
    function(items)
      return vim.iter(items):find(function(t)
        return t.id == failing.id
      end)
    end,
    "complete",
    "cancel", -- the escalation decision's option
  }
  vim.cmd("Orch tasks")
  H.wait("the escalation is notified", 30000, function()
    local n = H.note("task escalated: doomed")
    return n and n.level == vim.log.levels.WARN
  end, H.notes_text)
  H.wait("the escalation's decision reaches vim.ui.select", 20000, function()
    return vim.iter(H.selects):any(function(s)
      return s.kind == "orch.decision" and vim.tbl_contains(s.labels, "cancel")
    end)
  end, function()
    return vim.inspect(vim.tbl_map(function(s)
      return s.prompt
    end, H.selects))
  end)
  H.wait("the answer resolves the decision and cancels the task", 20000, function()
    local t = H.call("orch/task/get", { id = failing.id })
    return t and t.state == "cancelled"
  end, function()
    return vim.inspect(H.call("orch/task/get", { id = failing.id }))
  end)
  H.check("task progress arrived as $/progress", progress > 0, "no LspProgress")
end)
