--- Options of the orch plugin: the annotated defaults, the schema that validates what a user passes
--- to `setup()`, and the merged result. This module knows nothing about the daemon; it only answers
--- "what did the user ask for". Other modules read options as fields of this module
--- (`require("orch.config").cmd`), which always reflect the latest successful `setup()`.

local M = {}

---@alias orch.Layout "split"|"vsplit"|"tab"|"float"|"current"

---@class orch.WinConfig
---@field layout orch.Layout where the window opens
---@field size? number rows (split) or columns (vsplit); below 1 it is a fraction of the editor

---@class orch.Config
local defaults = {
  --- How to start the stdio forwarder to the workspace daemon. `orch lsp` starts the daemon itself
  --- when none runs, so agents outlive Neovim and several editors share one daemon.
  ---@type string[]
  cmd = { "orch", "lsp" },
  --- Extra environment for `cmd`.
  ---@type table<string, string>?
  env = nil,
  --- The workspace root (one daemon, one connection per root). A string, a function returning one,
  --- or nil: like the orch CLI, `$ORCH_WORKSPACE`, else the nearest directory upwards from the cwd
  --- holding any of `root_markers`, else the cwd.
  ---@type string|fun():string?|nil
  root = nil,
  ---@type string[]
  root_markers = { "orch.toml", ".git" },
  --- A dead connection (daemon killed, restarted, upgraded) is restarted with exponential backoff;
  --- the events missed meanwhile are replayed from the last sequence number seen.
  reconnect = {
    enabled = true,
    initial_ms = 250, -- first delay
    max_ms = 10000, -- ceiling of the delay
    -- Give up after this many failed attempts in a row (0: never); the next command tries again.
    max_attempts = 8,
  },
  --- Notifications that matter, through `vim.notify` with a title. A level of `false` silences one.
  notify = {
    enabled = true,
    title = "orch",
    ---@type table<string, integer|false>
    levels = {
      waiting = vim.log.levels.WARN, -- an agent asks the human something
      exited = vim.log.levels.INFO, -- an agent exited with status 0 (or was stopped)
      failed = vim.log.levels.ERROR, -- an agent failed, or exited with a non-zero status
      lost = vim.log.levels.WARN, -- an agent did not survive a daemon restart
      task_done = vim.log.levels.INFO,
      task_failed = vim.log.levels.WARN, -- a task failed or was escalated
      decision = vim.log.levels.WARN, -- a decision is pending
      log = false, -- the daemon's `window/logMessage` warnings and errors
    },
  },
  decisions = {
    --- Ask at once with `vim.ui.select` when the daemon offers a pending decision. When false, the
    --- notification says so and `:Orch decide` answers it.
    prompt = true,
  },
  send = {
    --- `:Orch send` presses Enter after the text (`:Orch! send` does not).
    submit = true,
  },
  attach = {
    --- Resize the agent's terminal to the window it is shown in (on attach and on resize).
    resize = true,
    --- Enter terminal mode after attaching.
    startinsert = false,
  },
  --- Windows of the plugin's buffers.
  ---@type table<string, orch.WinConfig>
  win = {
    list = { layout = "split", size = 12 },
    attach = { layout = "vsplit", size = 0.5 },
    events = { layout = "split", size = 15 },
    details = { layout = "float", size = 0.8 },
  },
  --- Buffer-local keys of the agents list (`:Orch list`). `false` disables one.
  ---@type table<string, string|false>
  list_keys = {
    attach = "<CR>",
    send = "s",
    stop = "x",
    restart = "r",
    diff = "d",
    refresh = "R",
    close = "q",
    help = "?",
  },
  --- Buffer-local keys of the file list in the review tab (`:Orch diff`). `false` disables one.
  ---@type table<string, string|false>
  diff_keys = {
    open = "<CR>", -- show the file under the cursor against the base
    refresh = "R", -- ask for the diff again
    close = "q", -- close the tab
  },
  --- Global normal-mode keymaps; off by default. Example: `{ list = "<leader>ol", attach = "<leader>oa" }`
  --- (any subcommand name).
  ---@type table<string, string>|false
  keymaps = false,
  events = {
    history = 200, -- events fetched from before this Neovim connected, for `:Orch events`
    max = 5000, -- events kept in memory
  },
  statusline = {
    --- States counted by `require("orch").statusline()`, in this order.
    ---@type string[]
    states = { "busy", "waiting", "idle", "running", "starting", "failed", "lost" },
  },
}

M.defaults = defaults

---@type orch.Config
M.options = vim.deepcopy(defaults)
M.setup_called = false

local LAYOUTS = { "split", "vsplit", "tab", "float", "current" }
local STATES =
  { "starting", "running", "idle", "busy", "waiting", "exiting", "unreachable", "exited", "failed", "stopped", "lost" }

-- A spec is { check = fn(v) -> bool, desc = "what is expected" } or { fields = { name = spec } }
-- for nested tables, or { map = spec } for tables of arbitrary string keys.
local function t(kind, opt)
  return {
    desc = (opt and "a " .. kind .. " or nil" or "a " .. kind),
    check = function(v)
      return type(v) == kind or (opt and v == nil)
    end,
  }
end

local function list_of(kind, opt, allowed, what)
  local function elem(x)
    return type(x) == kind and (not allowed or vim.tbl_contains(allowed, x))
  end
  return {
    desc = allowed and ("a list of %s (%s)"):format(what, table.concat(allowed, ", ")) or ("a list of " .. kind .. "s"),
    elem = elem,
    check = function(v)
      if opt and v == nil then
        return true
      end
      if type(v) ~= "table" or not vim.islist(v) then
        return false
      end
      for _, x in ipairs(v) do
        if not elem(x) then
          return false
        end
      end
      return true
    end,
  }
end

local function one_of(values)
  return {
    desc = "one of " .. table.concat(values, ", "),
    check = function(v)
      return vim.tbl_contains(values, v)
    end,
  }
end

local level = {
  desc = "a vim.log.levels value or false",
  check = function(v)
    return v == false or (type(v) == "number" and v >= 0 and v <= 5)
  end,
}

local count = {
  desc = "a non-negative integer",
  check = function(v)
    return type(v) == "number" and v >= 0 and math.floor(v) == v
  end,
}

local win = {
  fields = {
    layout = one_of(LAYOUTS),
    size = {
      desc = "a positive number or nil",
      check = function(v)
        return v == nil or (type(v) == "number" and v > 0)
      end,
    },
  },
}

local schema = {
  fields = {
    cmd = {
      desc = "a list of strings",
      elem = list_of("string").elem,
      check = function(v)
        return list_of("string").check(v) and #v > 0
      end,
    },
    env = {
      desc = "a table of strings or nil",
      check = function(v)
        if v == nil then
          return true
        end
        if type(v) ~= "table" then
          return false
        end
        for k, x in pairs(v) do
          if type(k) ~= "string" or type(x) ~= "string" then
            return false
          end
        end
        return true
      end,
    },
    root = {
      desc = "a string, a function or nil",
      check = function(v)
        return v == nil or type(v) == "string" or type(v) == "function"
      end,
    },
    root_markers = list_of("string"),
    reconnect = {
      fields = {
        enabled = t("boolean"),
        initial_ms = count,
        max_ms = count,
        max_attempts = count,
      },
    },
    notify = {
      fields = {
        enabled = t("boolean"),
        title = t("string"),
        levels = { map = level, keys = vim.tbl_keys(defaults.notify.levels) },
      },
    },
    decisions = { fields = { prompt = t("boolean") } },
    send = { fields = { submit = t("boolean") } },
    attach = { fields = { resize = t("boolean"), startinsert = t("boolean") } },
    win = { fields = { list = win, attach = win, events = win, details = win } },
    list_keys = {
      map = {
        desc = "a key (string) or false",
        check = function(v)
          return v == false or type(v) == "string"
        end,
      },
      keys = vim.tbl_keys(defaults.list_keys),
    },
    diff_keys = {
      map = {
        desc = "a key (string) or false",
        check = function(v)
          return v == false or type(v) == "string"
        end,
      },
      keys = vim.tbl_keys(defaults.diff_keys),
    },
    keymaps = {
      desc = "false or a table of subcommand = key",
      check = function(v)
        if v == false then
          return true
        end
        if type(v) ~= "table" then
          return false
        end
        for k, x in pairs(v) do
          if type(k) ~= "string" or type(x) ~= "string" then
            return false
          end
        end
        return true
      end,
    },
    events = { fields = { history = count, max = count } },
    statusline = { fields = { states = list_of("string", false, STATES, "agent states") } },
  },
}

--- What a value is, for an error message: its type, or the value itself for short scalars.
---@param v any
local function describe(v)
  if type(v) == "string" then
    return ("string %q"):format(v)
  elseif type(v) == "table" then
    return vim.islist(v) and "a list" or "a table"
  end
  return type(v)
end

---@param spec table
---@param v any
---@param path string
---@param errors string[]
local function check(spec, v, path, errors)
  if spec.fields then
    if type(v) ~= "table" then
      errors[#errors + 1] = ("orch: option '%s' must be a table, got %s"):format(path, describe(v))
      return
    end
    for k, x in pairs(v) do
      local sub = spec.fields[k]
      local p = path == "" and tostring(k) or (path .. "." .. tostring(k))
      if not sub then
        errors[#errors + 1] = ("orch: unknown option '%s'"):format(p)
      else
        check(sub, x, p, errors)
      end
    end
  elseif spec.map then
    if type(v) ~= "table" then
      errors[#errors + 1] = ("orch: option '%s' must be a table, got %s"):format(path, describe(v))
      return
    end
    for k, x in pairs(v) do
      local p = path .. "." .. tostring(k)
      if spec.keys and not vim.tbl_contains(spec.keys, k) then
        table.sort(spec.keys)
        errors[#errors + 1] = ("orch: unknown option '%s' (known: %s)"):format(p, table.concat(spec.keys, ", "))
      else
        check(spec.map, x, p, errors)
      end
    end
  elseif not spec.check(v) then
    local got = describe(v)
    if spec.elem and type(v) == "table" and vim.islist(v) then
      got = #v == 0 and "an empty list" or got
      for i, x in ipairs(v) do
        if not spec.elem(x) then
          got = ("a list with %s at [%d]"):format(describe(x), i)
          break
        end
      end
    end
    errors[#errors + 1] = ("orch: option '%s' must be %s, got %s"):format(path, spec.desc, got)
  end
end

--- Check user options against the schema.
---@param opts table?
---@return string[] errors one readable message per problem, each naming the option
function M.validate(opts)
  local errors = {}
  if opts == nil then
    return errors
  end
  if type(opts) ~= "table" then
    return { ("orch: setup() takes a table of options, got %s"):format(describe(opts)) }
  end
  check(schema, opts, "", errors)
  table.sort(errors)
  return errors
end

--- Merge `opts` over the defaults. Invalid options are reported and the defaults kept, so a typo
--- in a config never leaves the plugin half-configured.
---@param opts? orch.Config|table
---@return boolean ok
---@return string[] errors
function M.setup(opts)
  M.setup_called = true
  local errors = M.validate(opts)
  if #errors > 0 then
    M.options = vim.deepcopy(defaults)
    return false, errors
  end
  -- Lists replace the default list instead of being merged index by index.
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  for _, key in ipairs({ "cmd", "root_markers" }) do
    if opts and opts[key] then
      M.options[key] = vim.deepcopy(opts[key])
    end
  end
  if opts and opts.statusline and opts.statusline.states then
    M.options.statusline.states = vim.deepcopy(opts.statusline.states)
  end
  return true, errors
end

---@cast M +orch.Config
return setmetatable(M, {
  __index = function(_, key)
    return M.options[key]
  end,
})
