--- The review tab (`:Orch diff`): what an agent's worktree changed against its base, from one
--- `orch/agent/diff` result. A file list (one line per changed file: status, path, lines added and
--- deleted) beside two windows in diff mode: on the left the base version (`git show
--- <mergeBase>:<path>` run in the worktree, a read-only scratch buffer), on the right the
--- worktree's own file, the real one (edits go to the agent's checkout). An added file has an
--- empty left side, a deleted one an empty right side. While the worktree is paused (no checkout)
--- the right side is the branch's version, read-only.
---
--- It asks the daemon only for the diff; file contents come from git and the file system.

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

---@class orch.ChangedFile
---@field path string relative to the worktree's top
---@field status "added"|"modified"|"deleted"|"renamed"
---@field oldPath? string
---@field additions integer
---@field deletions integer
---@field binary? boolean

---@class orch.DiffView
---@field conn orch.Conn
---@field agent orch.Agent
---@field result table the `orch/agent/diff` result shown
---@field tab integer
---@field list_buf integer
---@field list_win integer
---@field base_win integer left: the base version
---@field work_win integer right: the worktree's file
---@field rows table<integer, orch.ChangedFile> list line -> file
---@field current? orch.ChangedFile the file in the diff windows
---@field seq integer bumped per file shown, so a slow `git show` never lands in a newer one

---@type table<string, orch.DiffView> by workspace root and agent id
M.views = {}

local STATUS = { added = "A", modified = "M", deleted = "D", renamed = "R" }

---@param v any
local function given(v)
  return v ~= nil and v ~= vim.NIL and v ~= ""
end

--- The lines of the file list (pure, for tests): a header, then one line per file.
---@param result table an `orch/agent/diff` result
---@return string[] lines
---@return table<integer, orch.ChangedFile> rows line number -> file
function M.format(result)
  local files = type(result.files) == "table" and result.files or {}
  local lines = {
    ("%s against %s at %s"):format(
      tostring(result.branch),
      tostring(result.base),
      tostring(result.mergeBase or ""):sub(1, 12)
    ),
  }
  local names, width = {}, 0
  for i, f in ipairs(files) do
    names[i] = given(f.oldPath) and (f.oldPath .. " -> " .. f.path) or f.path
    width = math.max(width, vim.fn.strdisplaywidth(names[i]))
  end
  local rows = {}
  for i, f in ipairs(files) do
    local counts = f.binary and "binary" or ("+%d -%d"):format(f.additions or 0, f.deletions or 0)
    local pad = string.rep(" ", width - vim.fn.strdisplaywidth(names[i]))
    lines[#lines + 1] = ("%s %s%s  %s"):format(STATUS[f.status] or "?", names[i], pad, counts)
    rows[#lines] = f
  end
  if #files == 0 then
    lines[#lines + 1] = "(no changes)"
  end
  return lines, rows
end

--- A read-only scratch buffer named `name` holding `lines`, reused when it still exists.
---@param name string
---@param path string the file it shows, for its filetype
---@param lines string[]
---@return integer buf
local function scratch(name, path, lines)
  local buf = vim.fn.bufnr(name)
  if buf == -1 or not vim.api.nvim_buf_is_valid(buf) then
    buf = Util.scratch(name, vim.filetype.match({ filename = path }) or "")
    vim.bo[buf].bufhidden = "wipe"
  end
  Util.set_lines(buf, lines)
  return buf
end

--- `git show <rev>:<path>` in `cwd`; `cb(lines, err)` on the main loop.
---@param cwd string
---@param rev string
---@param path string
---@param cb fun(lines: string[], err?: string)
local function show(cwd, rev, path, cb)
  local ok, err = pcall(vim.system, { "git", "show", rev .. ":" .. path }, { cwd = cwd, text = true }, function(res)
    vim.schedule(function()
      if res.code ~= 0 then
        cb({}, vim.trim(res.stderr or "") ~= "" and vim.trim(res.stderr) or ("git show exited " .. res.code))
        return
      end
      local lines = vim.split(res.stdout or "", "\n", { plain = true })
      if lines[#lines] == "" then
        table.remove(lines)
      end
      cb(lines)
    end)
  end)
  if not ok then
    cb({}, tostring(err))
  end
end

---@param view orch.DiffView
local function diff_windows(view)
  return { view.base_win, view.work_win }
end

--- Show `file` in the two diff windows.
---@param view orch.DiffView
---@param file orch.ChangedFile
function M.show_file(view, file)
  view.seq = view.seq + 1
  local seq = view.seq
  view.current = file
  local res = view.result
  local top = given(res.path) and res.path or nil
  local name = view.agent.name or view.agent.id
  local label = ("orch://%s/%s/"):format(name, tostring(res.mergeBase):sub(1, 12))
  local old = given(file.oldPath) and file.oldPath or file.path
  local pending = 2
  local left, right
  local function done()
    pending = pending - 1
    if pending > 0 or seq ~= view.seq or not M.valid(view) then
      return
    end
    for _, w in ipairs(diff_windows(view)) do
      vim.api.nvim_win_call(w, function()
        vim.cmd("diffoff")
      end)
    end
    vim.api.nvim_win_set_buf(view.base_win, left)
    if type(right) == "string" then
      local full = right
      vim.api.nvim_win_call(view.work_win, function()
        vim.cmd.edit(vim.fn.fnameescape(full))
      end)
    else
      vim.api.nvim_win_set_buf(view.work_win, right)
    end
    if not file.binary then
      for _, w in ipairs(diff_windows(view)) do
        vim.api.nvim_win_call(w, function()
          vim.cmd("diffthis")
        end)
      end
    end
  end
  local function warn(err)
    Util.warn(("%s: %s"):format(file.path, err))
  end

  -- Left: the base version.
  if file.binary then
    left = scratch(label .. old, old, { "(binary file)" })
    done()
  elseif file.status == "added" then
    left = scratch(label .. old, old, {})
    done()
  else
    show(top or view.conn.root, res.mergeBase, old, function(lines, err)
      if err then
        warn(err)
      end
      left = scratch(label .. old, old, lines)
      done()
    end)
  end

  -- Right: the worktree's file.
  local branch_label = ("orch://%s/%s/"):format(name, tostring(res.branch))
  if file.binary then
    right = scratch(branch_label .. file.path, file.path, { "(binary file)" })
    done()
  elseif file.status == "deleted" then
    right = scratch(branch_label .. file.path, file.path, {})
    done()
  elseif top then
    right = vim.fs.joinpath(top, file.path)
    done()
  else
    -- Paused: no checkout, the branch holds everything (pausing committed it).
    show(view.conn.root, res.branch, file.path, function(lines, err)
      if err then
        warn(err)
      end
      right = scratch(branch_label .. file.path, file.path, lines)
      done()
    end)
  end
end

--- Whether the view's tab and windows are still there.
---@param view orch.DiffView
function M.valid(view)
  return vim.api.nvim_tabpage_is_valid(view.tab)
    and vim.api.nvim_win_is_valid(view.list_win)
    and vim.api.nvim_win_is_valid(view.base_win)
    and vim.api.nvim_win_is_valid(view.work_win)
end

--- Fill the list from `result`, then show the file that was shown (if still changed), else the
--- first.
---@param view orch.DiffView
---@param result table
function M.render(view, result)
  view.result = result
  local lines, rows = M.format(result)
  view.rows = rows
  Util.set_lines(view.list_buf, lines)
  local width = 0
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  vim.api.nvim_win_set_width(view.list_win, math.min(math.max(width + 1, 20), math.floor(vim.o.columns / 3)))
  local line
  for l, f in pairs(rows) do
    if view.current and f.path == view.current.path and (not line or l < line) then
      line = l
    end
  end
  if not line then
    for l in pairs(rows) do
      line = (not line or l < line) and l or line
    end
  end
  if line then
    vim.api.nvim_win_set_cursor(view.list_win, { line, 0 })
    M.show_file(view, rows[line])
  end
end

--- Ask the daemon for the diff again.
---@param view orch.DiffView
function M.refresh(view)
  view.conn:request("orch/agent/diff", { id = view.agent.id }, function(err, result)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    if M.valid(view) then
      M.render(view, result)
    end
  end)
end

---@param view orch.DiffView
local function keymaps(view)
  local keys = Config.diff_keys
  local function map(name, fn, desc)
    if keys[name] then
      vim.keymap.set("n", keys[name], fn, { buffer = view.list_buf, nowait = true, desc = "orch: " .. desc })
    end
  end
  map("open", function()
    local f = view.rows[vim.api.nvim_win_get_cursor(0)[1]]
    if f then
      M.show_file(view, f)
    end
  end, "show the file under the cursor")
  map("refresh", function()
    M.refresh(view)
  end, "ask for the diff again")
  map("close", function()
    if #vim.api.nvim_list_tabpages() > 1 then
      vim.cmd.tabclose(vim.api.nvim_tabpage_get_number(view.tab))
    else
      Util.warn("the review is the last tab")
    end
  end, "close the review tab")
end

--- Open the review tab of `agent` with `result` (an `orch/agent/diff` result), or go to the one
--- already open and show `result` there.
---@param conn orch.Conn
---@param agent orch.Agent
---@param result table
---@return orch.DiffView
function M.show(conn, agent, result)
  local key = conn.root .. "\0" .. agent.id
  local view = M.views[key]
  if view and M.valid(view) then
    vim.api.nvim_set_current_tabpage(view.tab)
    vim.api.nvim_set_current_win(view.list_win)
    M.render(view, result)
    return view
  end
  local name = agent.name or agent.id
  local list_buf = Util.scratch("orch://diff/" .. name, "orch_diff")
  vim.bo[list_buf].bufhidden = "wipe"
  vim.cmd.tabnew()
  local tab = vim.api.nvim_get_current_tabpage()
  local list_win = vim.api.nvim_get_current_win()
  local empty = vim.api.nvim_get_current_buf()
  vim.api.nvim_win_set_buf(list_win, list_buf)
  if empty ~= list_buf and vim.api.nvim_buf_get_name(empty) == "" then
    pcall(vim.api.nvim_buf_delete, empty, { force = true })
  end
  local function placeholder()
    local b = vim.api.nvim_create_buf(false, true)
    vim.bo[b].bufhidden = "wipe"
    return b
  end
  local base_win = vim.api.nvim_open_win(placeholder(), false, { split = "right", win = list_win })
  local work_win = vim.api.nvim_open_win(placeholder(), false, { split = "right", win = base_win })
  for _, o in ipairs({ { "winfixwidth", true }, { "wrap", false }, { "cursorline", true }, { "number", false } }) do
    vim.wo[list_win][o[1]] = o[2]
  end
  view = {
    conn = conn,
    agent = agent,
    result = result,
    tab = tab,
    list_buf = list_buf,
    list_win = list_win,
    base_win = base_win,
    work_win = work_win,
    rows = {},
    seq = 0,
  }
  M.views[key] = view
  vim.api.nvim_create_autocmd("BufWipeout", {
    buffer = list_buf,
    once = true,
    callback = function()
      if M.views[key] == view then
        M.views[key] = nil
      end
    end,
  })
  keymaps(view)
  M.render(view, result)
  -- The two sides share what is left of the width.
  vim.api.nvim_win_call(list_win, function()
    vim.cmd("wincmd =")
  end)
  return view
end

--- `:Orch diff`: fetch the agent's diff and open it in a tab of its own (nothing opens when the
--- worktree has no changes).
---@param conn orch.Conn
---@param agent orch.Agent
function M.open(conn, agent)
  conn:request("orch/agent/diff", { id = agent.id }, function(err, result)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    local key = conn.root .. "\0" .. agent.id
    if (type(result.files) ~= "table" or #result.files == 0) and not (M.views[key] and M.valid(M.views[key])) then
      Util.info(("%s has no changes against %s"):format(tostring(result.branch), tostring(result.base)))
      return
    end
    M.show(conn, agent, result)
  end)
end

return M
