-- Scenario: the plugin is lazy, setup() validates and merges options with messages that name the
-- option, `:Orch` completes its subcommands, and `:help orch` documents every one of them. Needs no
-- daemon; it checks that none was started.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

H.run(function()
  H.check(":Orch is defined by plugin/orch.lua", vim.fn.exists(":Orch") == 2)
  H.check("loading the plugin loads no module", package.loaded["orch"] == nil and package.loaded["orch.client"] == nil)

  local Orch = require("orch")
  H.check("statusline is empty before any use", Orch.statusline() == "", Orch.statusline())
  H.check("statusline does not load the client", package.loaded["orch.client"] == nil)

  -- Bad options: each message names the option.
  local cases = {
    { { cmd = 42 }, "orch: option 'cmd' must be a list of strings, got number" },
    { { cmd = { "orch", 1 } }, "orch: option 'cmd' must be a list of strings, got a list with number at [2]" },
    { { cmd = "orch lsp" }, "orch: option 'cmd' must be a list of strings, got string \"orch lsp\"" },
    { { bogus = true }, "orch: unknown option 'bogus'" },
    { { win = { attach = { layout = "side" } } }, "orch: option 'win.attach.layout' must be one of split, vsplit, tab, float, current, got string \"side\"" },
    { { reconnect = { initial_ms = -1 } }, "orch: option 'reconnect.initial_ms' must be a non-negative integer, got number" },
    { { notify = { levels = { waiting = "loud" } } }, "orch: option 'notify.levels.waiting' must be a vim.log.levels value or false, got string \"loud\"" },
    { { statusline = { states = { "busy", "sleepy" } } }, "orch: option 'statusline.states' must be a list of agent states (starting, running, idle, busy, waiting, exiting, unreachable, exited, failed, stopped, lost), got a list with string \"sleepy\" at [2]" },
    { { cmd = {} }, "orch: option 'cmd' must be a list of strings, got an empty list" },
    { "fast", "orch: setup() takes a table of options, got string \"fast\"" },
  }
  for _, case in ipairs(cases) do
    local before = #H.notes
    local ok = Orch.setup(case[1])
    H.check(("setup(%s) is refused"):format(vim.inspect(case[1], { newline = " ", indent = "" })), ok == false)
    H.wait(("message: %s"):format(case[2]), 2000, function()
      for i = before + 1, #H.notes do
        local n = H.notes[i]
        if n.msg:find(case[2], 1, true) and n.level == vim.log.levels.ERROR and n.title == "orch" then
          return true
        end
      end
    end, H.notes_text)
  end

  local Config = require("orch.config")
  H.check("refused options leave the defaults", vim.deep_equal(Config.cmd, { "orch", "lsp" }), vim.inspect(Config.cmd))

  -- Good options: deep-merged over the defaults, lists replaced.
  local ok = Orch.setup({
    cmd = { H.bin, "lsp" },
    root = H.ws,
    reconnect = { initial_ms = 50 },
    notify = { levels = { exited = false } },
    statusline = { states = { "waiting" } },
  })
  H.check("valid options are accepted", ok == true)
  H.check("cmd is replaced", vim.deep_equal(Config.cmd, { H.bin, "lsp" }), vim.inspect(Config.cmd))
  H.check("nested option merged", Config.reconnect.initial_ms == 50 and Config.reconnect.max_ms == 10000, vim.inspect(Config.reconnect))
  H.check(
    "sibling defaults kept",
    Config.notify.levels.exited == false and Config.notify.levels.waiting == vim.log.levels.WARN,
    vim.inspect(Config.notify.levels)
  )
  H.check("lists are replaced, not merged", vim.deep_equal(Config.statusline.states, { "waiting" }))
  H.check("defaults table is untouched", vim.deep_equal(Config.defaults.cmd, { "orch", "lsp" }))
  Orch.setup({ cmd = { H.bin, "lsp" }, root = H.ws })

  -- Completion of subcommands (no daemon needed).
  local subs = vim.fn.getcompletion("Orch ", "cmdline")
  local want = {
    "attach", "decide", "diff", "discard", "events", "help", "list", "merge", "pause", "restart", "resume", "send",
    "spawn", "status", "stop", "task", "tasks",
  }
  H.check("completion lists every subcommand", vim.deep_equal(subs, want), vim.inspect(subs))
  local ta = vim.fn.getcompletion("Orch ta", "cmdline")
  H.check("completion filters by prefix", vim.deep_equal(ta, { "task", "tasks" }), vim.inspect(ta))
  local new = vim.fn.getcompletion("Orch task ", "cmdline")
  H.check("completion of nested subcommands", vim.deep_equal(new, { "new" }), vim.inspect(new))
  local none = vim.fn.getcompletion("Orch status ", "cmdline")
  H.check("no completion after an argument-less subcommand", #none == 0, vim.inspect(none))

  -- :Orch help lists them all, and the unknown subcommand is named.
  vim.cmd("Orch help")
  H.wait(":Orch help lists the subcommands", 2000, function()
    local n = H.note("Usage: :Orch")
    return n and n.msg:find("spawn <kind>", 1, true) and n.msg:find("task new", 1, true) and n.msg:find("decide", 1, true)
  end, H.notes_text)
  vim.cmd("Orch frobnicate")
  H.wait("unknown subcommand is reported", 2000, function()
    return H.note("unknown subcommand 'frobnicate'")
  end, H.notes_text)

  -- Pure helpers.
  local Util = require("orch.util")
  H.check("RFC 3339 parsing", Util.parse_time("1970-01-02T00:00:00Z") == 86400
    and Util.parse_time("2024-03-01T12:00:00.250+01:00") == Util.parse_time("2024-03-01T11:00:00.25Z"))
  H.check("ages", Util.format_age(42) == "42s" and Util.format_age(300) == "5m" and Util.format_age(7200) == "2h")
  local lines = require("orch.ui.list").format({
    { id = "a1", name = "shell-1", kind = "shell", state = "busy", createdAt = os.date("!%Y-%m-%dT%H:%M:%SZ") },
  }, {})
  H.check("list lines", lines[1]:match("^NAME%s+KIND%s+STATE%s+TASK%s+AGE$") and lines[2]:match("^shell%-1%s+shell%s+busy%s+%-%s+%d+s$"), vim.inspect(lines))

  -- State: events apply once, in order; the statusline is cached until an agent changes.
  local State = require("orch.state")
  local s = State.new()
  s:set_agents({ { id = "a1", name = "one", state = "busy" }, { id = "a2", name = "two", state = "waiting" }, { id = "a3", name = "three", state = "busy" } })
  Orch.setup({ cmd = { H.bin, "lsp" }, root = H.ws })
  H.check("statusline counts by state", s:statusline() == "2 busy 1 waiting", s:statusline())
  s:apply({ seq = 1, kind = "agent.state", subject = "a1", data = { state = "idle", previous = "busy" } })
  s:apply({ seq = 1, kind = "agent.state", subject = "a1", data = { state = "failed", previous = "busy" } })
  H.check("a repeated seq is dropped", s.agents.a1.state == "idle" and s.duplicates == 1)
  H.check("statusline recomputed after an agent event", s:statusline() == "1 busy 1 waiting 1 idle", s:statusline())

  -- :help orch, from a copy of the doc (helptags writes next to it).
  local tmp = vim.fn.tempname()
  vim.fn.mkdir(tmp .. "/doc", "p")
  vim.fn.writefile(vim.fn.readfile(H.repo .. "/doc/orch.txt"), tmp .. "/doc/orch.txt")
  vim.cmd.helptags(tmp .. "/doc")
  vim.opt.rtp:prepend(tmp)
  local helped = pcall(vim.cmd.help, "orch")
  H.check(":help orch opens doc/orch.txt", helped and vim.api.nvim_buf_get_name(0):match("orch%.txt$") ~= nil)
  local doc = table.concat(vim.fn.readfile(H.repo .. "/doc/orch.txt"), "\n")
  for _, name in ipairs(require("orch.commands").names()) do
    H.check(("doc documents :Orch %s"):format(name), doc:find("*:Orch-" .. name .. "*", 1, true) ~= nil)
  end
  H.check("doc documents :Orch task new", doc:find("*:Orch-task-new*", 1, true) ~= nil)
  pcall(vim.cmd.helpclose)

  H.check("no daemon connection was started", #vim.lsp.get_clients({ name = "orch" }) == 0)
end)
