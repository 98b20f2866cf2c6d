-- Scenario: agents in git worktrees, from Neovim. `:Orch spawn <kind> <name> --worktree` starts
-- one on its own branch; `:Orch diff` opens one tab with the file list (status, +/-) and, for the
-- file under the cursor, the base version and the worktree's file side by side in diff mode; the
-- agents list shows the branch and the change count; `:Orch merge <agent> squash` lands one commit;
-- `:Orch pause` and `:Orch resume`; `:Orch discard` of unmerged work asks through the decision
-- (vim.ui.select) and removes the worktree once answered.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

--- `git args...` in the workspace; its stdout, trimmed, or nil and the error.
local function git(args)
  local cmd = { "git", "-c", "user.name=test", "-c", "user.email=test@localhost" }
  vim.list_extend(cmd, args)
  local r = vim.system(cmd, { cwd = H.ws, text = true }):wait(20000)
  if r.code ~= 0 then
    return nil, ("git %s: %s"):format(table.concat(args, " "), r.stderr)
  end
  return vim.trim(r.stdout)
end

local function lines(buf)
  return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
end

H.run(function()
  -- A repository with a commit, before anything starts the daemon.
  vim.fn.writefile({
    "[agents.editor]",
    [=[command = ["bash", "--norc", "--noprofile", "-c", "echo changed >> a.txt; echo new > b.txt; rm c.txt; exec sleep 600"]]=],
    "idle_after_ms = 300",
    "",
    "[agents.scribbler]",
    [=[command = ["bash", "--norc", "--noprofile", "-c", "echo draft > notes.txt; exec sleep 600"]]=],
    "idle_after_ms = 300",
  }, H.ws .. "/orch.toml")
  vim.fn.writefile({ "one", "two" }, H.ws .. "/a.txt")
  vim.fn.writefile({ "gone" }, H.ws .. "/c.txt")
  for _, args in ipairs({ { "init", "-q", "-b", "main" }, { "add", "-A" }, { "commit", "-q", "-m", "start" } }) do
    local _, err = git(args)
    if err then
      H.fail("the workspace is a git repository", err)
      return
    end
  end
  local start = git({ "rev-parse", "HEAD" })

  H.stub_select(function(items, opts)
    if opts.kind == "orch.decision" then
      for _, it in ipairs(items) do
        if (type(it) == "table" and it.title or it) == "discard" then
          return it
        end
      end
    end
    return nil
  end)

  H.setup()
  local Orch = require("orch")
  local conn = Orch.conn()

  vim.cmd("Orch spawn editor w1 --worktree")
  local agent
  H.wait(":Orch spawn editor w1 --worktree starts an agent on its own branch", 30000, function()
    agent = conn.state:find_agent("w1")
    return agent and type(agent.worktree) == "table" and agent.worktree.branch == "orch/w1"
  end, H.notes_text)
  if not agent then
    return
  end
  local wt = agent.worktree.path
  H.check("the spawn names the branch", H.note("spawned w1 (editor) on orch/w1") ~= nil, H.notes_text)
  H.wait("the agent made its three changes", 20000, function()
    local d = H.call("orch/agent/diff", { id = "w1" })
    return d and #d.files == 3
  end, function()
    return vim.inspect(H.call("orch/agent/diff", { id = "w1" }))
  end)

  -- Completion offers agents with worktrees, and the strategies.
  local names = vim.fn.getcompletion("Orch diff ", "cmdline")
  H.check("completion of :Orch diff lists the agent", vim.tbl_contains(names, "w1"), vim.inspect(names))
  local strategies = vim.fn.getcompletion("Orch merge w1 ", "cmdline")
  H.check(
    "completion of :Orch merge lists the strategies",
    vim.deep_equal(strategies, { "merge", "squash", "rebase" }),
    vim.inspect(strategies)
  )

  -- The review tab.
  local tabs_before = #vim.api.nvim_list_tabpages()
  vim.cmd("Orch diff w1")
  local View = require("orch.ui.diff")
  local function diff_wins()
    local wins = vim.tbl_filter(function(w)
      return vim.wo[w].diff
    end, vim.api.nvim_tabpage_list_wins(0))
    table.sort(wins, function(a, b)
      return vim.api.nvim_win_get_position(a)[2] < vim.api.nvim_win_get_position(b)[2]
    end)
    return wins
  end
  local function sides()
    local wins = diff_wins()
    if #wins ~= 2 then
      return ("%d diff windows"):format(#wins)
    end
    return vim.inspect({
      left = lines(vim.api.nvim_win_get_buf(wins[1])),
      right = lines(vim.api.nvim_win_get_buf(wins[2])),
      right_name = vim.api.nvim_buf_get_name(vim.api.nvim_win_get_buf(wins[2])),
    })
  end
  --- Whether the left diff window shows `left` and the right one `right` (and `right_file`).
  local function shows(left, right, right_file)
    local wins = diff_wins()
    if #wins ~= 2 then
      return false
    end
    local lb, rb = vim.api.nvim_win_get_buf(wins[1]), vim.api.nvim_win_get_buf(wins[2])
    if right_file and vim.api.nvim_buf_get_name(rb) ~= right_file then
      return false
    end
    return vim.deep_equal(lines(lb), left) and vim.deep_equal(lines(rb), right)
  end
  H.wait(":Orch diff opens one new tab", 10000, function()
    return #vim.api.nvim_list_tabpages() == tabs_before + 1
  end)
  local view
  H.wait("the tab shows the first file: base on the left, the worktree's file on the right, in diff mode", 10000, function()
    view = View.views[conn.root .. "\0" .. agent.id]
    return view and shows({ "one", "two" }, { "one", "two", "changed" }, vim.fs.joinpath(wt, "a.txt"))
  end, sides)
  if not view then
    return
  end
  local list = lines(view.list_buf)
  H.check("the file list names each changed file with its status and +/-", vim.deep_equal(vim.list_slice(list, 2), {
    "M a.txt  +1 -0",
    "A b.txt  +1 -0",
    "D c.txt  +0 -1",
  }), vim.inspect(list))
  H.check("the file list's header names the branch and the base", list[1]:match("^orch/w1 against main at %x+$"), list[1])
  H.check("the right side is the worktree's real file", vim.bo[vim.api.nvim_win_get_buf(view.work_win)].buftype == "")

  -- Enter on a line shows that file.
  local function open_line(n)
    vim.api.nvim_set_current_win(view.list_win)
    vim.api.nvim_win_set_cursor(view.list_win, { n, 0 })
    vim.api.nvim_feedkeys(vim.keycode("<CR>"), "x", false)
  end
  open_line(3)
  H.wait("Enter on an added file: nothing on the left, the new file on the right", 10000, function()
    return shows({ "" }, { "new" }, vim.fs.joinpath(wt, "b.txt"))
  end, sides)
  open_line(4)
  H.wait("Enter on a deleted file: the base on the left, nothing on the right", 10000, function()
    return shows({ "gone" }, { "" })
  end, sides)
  open_line(2)
  H.wait("Enter on the modified file shows it again", 10000, function()
    return shows({ "one", "two" }, { "one", "two", "changed" })
  end, sides)
  vim.cmd("Orch diff w1")
  vim.wait(300)
  H.check(":Orch diff of the same agent goes to its tab, no second one", #vim.api.nvim_list_tabpages() == tabs_before + 1)

  -- The agents list (in the first tab) shows the branch and the change count.
  vim.cmd("tabfirst")
  vim.cmd("Orch list")
  local lview = require("orch.ui.list").views[conn.root]
  H.wait("the agents list shows the branch and the change count", 20000, function()
    local text = H.text(lview.buf)
    return text:match("^NAME%s+KIND%s+STATE%s+TASK%s+BRANCH%s+AGE") and text:find("orch/w1 (3)", 1, true)
  end, function()
    return H.text(lview.buf)
  end)

  -- Squash: one commit on main.
  vim.cmd("Orch stop w1")
  H.wait("w1 stops", 20000, function()
    local a = conn.state:find_agent("w1")
    return a and a.state == "stopped"
  end)
  vim.cmd("Orch merge w1 squash")
  H.wait(":Orch merge w1 squash lands the work", 20000, function()
    return H.note("merged w1 (squash)")
  end, H.notes_text)
  local log = git({ "log", "--format=%H", start .. "..main" })
  H.check("one commit landed on main", log and #vim.split(log, "\n") == 1 and log == git({ "rev-parse", "HEAD" }), log)
  H.check("main has the agent's work", vim.deep_equal(vim.fn.readfile(H.ws .. "/a.txt"), { "one", "two", "changed" })
    and vim.fn.filereadable(H.ws .. "/b.txt") == 1 and vim.fn.filereadable(H.ws .. "/c.txt") == 0)
  vim.cmd("Orch discard w1")
  H.wait(":Orch discard of merged work removes the worktree at once", 20000, function()
    return H.note("discarded the worktree and branch of w1") and vim.fn.isdirectory(wt) == 0
  end, H.notes_text)
  H.wait("the list forgets the branch", 10000, function()
    local a = conn.state:find_agent("w1")
    return a and a.worktree == nil
  end)

  -- Pause and resume, then discarding unmerged work asks first.
  vim.cmd("Orch spawn scribbler w2 --worktree")
  local w2
  H.wait("a second agent in a worktree", 30000, function()
    w2 = conn.state:find_agent("w2")
    return w2 and type(w2.worktree) == "table" and vim.fn.filereadable(w2.worktree.path .. "/notes.txt") == 1
  end, H.notes_text)
  if not w2 then
    return
  end
  local wt2 = w2.worktree.path
  vim.cmd("Orch stop w2")
  H.wait("w2 stops", 20000, function()
    local a = conn.state:find_agent("w2")
    return a and a.state == "stopped"
  end)
  vim.cmd("Orch pause w2")
  H.wait(":Orch pause removes the checkout and keeps the branch", 20000, function()
    local a = conn.state:find_agent("w2")
    return H.note("paused w2") and a.worktree and a.worktree.paused == true and vim.fn.isdirectory(wt2) == 0
  end, H.notes_text)
  H.check("the branch is kept", git({ "branch", "--list", "orch/w2" }) == "orch/w2")
  vim.cmd("Orch resume w2")
  H.wait(":Orch resume checks it out again and restarts the agent", 20000, function()
    local a = conn.state:find_agent("w2")
    return H.note("resumed w2") and a.worktree and a.worktree.paused == false
      and vim.fn.filereadable(wt2 .. "/notes.txt") == 1
  end, H.notes_text)
  vim.cmd("Orch stop w2")
  H.wait("w2 stops again", 20000, function()
    local a = conn.state:find_agent("w2")
    return a and a.state == "stopped"
  end)
  vim.cmd("Orch discard w2")
  H.wait(":Orch discard of unmerged work says a decision asks", 20000, function()
    return H.note(":Orch! discard discards without asking")
  end, H.notes_text)
  H.wait("the decision is asked with vim.ui.select and answered: the worktree goes", 20000, function()
    local asked = vim.iter(H.selects):any(function(s)
      return s.kind == "orch.decision" and vim.tbl_contains(s.labels, "discard")
    end)
    return asked and vim.fn.isdirectory(wt2) == 0 and git({ "branch", "--list", "orch/w2" }) == ""
  end, function()
    return vim.inspect(H.selects) .. " " .. H.notes_text()
  end)
end)
