--- Small helpers shared by the plugin's modules: titled notifications, time arithmetic on the
--- daemon's RFC 3339 strings, and opening windows by layout. Nothing here talks to the daemon.

local M = {}

--- Notify through `vim.notify`, scheduled (safe from callbacks) and titled.
---@param msg string|string[]
---@param level? integer
function M.notify(msg, level)
  if type(msg) == "table" then
    msg = table.concat(msg, "\n")
  end
  local Config = require("orch.config")
  local title = Config.notify.title
  vim.schedule(function()
    vim.notify(msg, level or vim.log.levels.INFO, { title = title })
  end)
end

---@param msg string|string[]
function M.info(msg)
  M.notify(msg, vim.log.levels.INFO)
end

---@param msg string|string[]
function M.warn(msg)
  M.notify(msg, vim.log.levels.WARN)
end

---@param msg string|string[]
function M.error(msg)
  M.notify(msg, vim.log.levels.ERROR)
end

--- The message of a JSON-RPC error (or a plain string) for a person.
---@param err any
---@return string
function M.err_message(err)
  if type(err) == "table" then
    return err.message or vim.inspect(err)
  end
  return tostring(err)
end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). Pure arithmetic,
-- so no time zone of the machine leaks in, unlike `os.time{...}` which reads local time.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch of an RFC 3339 time, or nil when it does not parse.
---@param s string?
---@return number?
function M.parse_time(s)
  if type(s) ~= "string" then
    return nil
  end
  local y, mo, d, h, mi, sec, frac, tz = s:match("^(%d+)-(%d+)-(%d+)[Tt ](%d+):(%d+):(%d+)(%.?%d*)(.*)$")
  if not y then
    return nil
  end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600
    + tonumber(mi) * 60
    + tonumber(sec)
    + (tonumber("0" .. frac) or 0)
  local sign, oh, om = tz:match("^([+-])(%d%d):?(%d%d)$")
  if sign then
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    t = sign == "+" and t - off or t + off
  end
  return t
end

--- A short age such as `42s`, `5m`, `3h`, `2d`.
---@param secs number
function M.format_age(secs)
  secs = math.max(0, math.floor(secs))
  if secs < 60 then
    return secs .. "s"
  elseif secs < 3600 then
    return math.floor(secs / 60) .. "m"
  elseif secs < 86400 then
    return math.floor(secs / 3600) .. "h"
  end
  return math.floor(secs / 86400) .. "d"
end

--- The age of an object created at `time` (RFC 3339), or `-`.
---@param time string?
function M.age(time)
  local t = M.parse_time(time)
  if not t then
    return "-"
  end
  return M.format_age(os.time() - t)
end

---@param size number?
---@param total integer
---@param default integer
local function dim(size, total, default)
  if not size then
    return default
  end
  if size < 1 then
    return math.max(1, math.floor(total * size))
  end
  return math.floor(size)
end

--- Open `buf` in a window laid out as `win` says, and return the window.
---@param buf integer
---@param win orch.WinConfig
---@param title? string for floats
---@return integer win
function M.open_win(buf, win, title)
  local layout = win.layout
  if layout == "current" then
    vim.api.nvim_win_set_buf(0, buf)
    return vim.api.nvim_get_current_win()
  elseif layout == "tab" then
    vim.cmd.tabnew()
    local scratch = vim.api.nvim_get_current_buf()
    vim.api.nvim_win_set_buf(0, buf)
    if scratch ~= buf and vim.api.nvim_buf_is_valid(scratch) and vim.api.nvim_buf_get_name(scratch) == "" then
      pcall(vim.api.nvim_buf_delete, scratch, { force = true })
    end
    return vim.api.nvim_get_current_win()
  elseif layout == "float" then
    local width = dim(win.size, vim.o.columns, 100)
    local height = dim(win.size, vim.o.lines - 2, 30)
    width = math.min(width, vim.o.columns - 2)
    height = math.min(height, vim.o.lines - 4)
    return vim.api.nvim_open_win(buf, true, {
      relative = "editor",
      width = width,
      height = height,
      row = math.floor((vim.o.lines - height) / 2) - 1,
      col = math.floor((vim.o.columns - width) / 2),
      border = "rounded",
      title = title and (" " .. title .. " ") or nil,
      title_pos = title and "center" or nil,
    })
  elseif layout == "vsplit" then
    return vim.api.nvim_open_win(buf, true, {
      split = "right",
      win = -1,
      width = dim(win.size, vim.o.columns, math.floor(vim.o.columns / 2)),
    })
  end
  return vim.api.nvim_open_win(buf, true, {
    split = "below",
    win = -1,
    height = dim(win.size, vim.o.lines, 12),
  })
end

--- A window showing `buf` in the current tab, if any.
---@param buf integer
---@return integer?
function M.buf_win(buf)
  for _, w in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
    if vim.api.nvim_win_get_buf(w) == buf then
      return w
    end
  end
end

--- Show `buf`: focus its window when visible, else open one.
---@param buf integer
---@param win orch.WinConfig
---@param title? string
---@return integer win
function M.show(buf, win, title)
  local w = M.buf_win(buf)
  if w then
    vim.api.nvim_set_current_win(w)
    return w
  end
  return M.open_win(buf, win, title)
end

--- A scratch buffer for the plugin's views.
---@param name string
---@param filetype string
---@return integer
function M.scratch(name, filetype)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "hide"
  vim.bo[buf].swapfile = false
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = filetype
  pcall(vim.api.nvim_buf_set_name, buf, name)
  return buf
end

--- Replace the lines of a non-modifiable scratch buffer.
---@param buf integer
---@param lines string[]
function M.set_lines(buf, lines)
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
end

return M
