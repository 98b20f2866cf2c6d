--- `:checkhealth orch`: the Neovim version, the `orch` binary and its version, whether the
--- workspace daemon answers, tmux (optional), and whether `setup()` was called.

local M = {}

function M.check()
  local health = vim.health
  local Config = require("orch.config")

  health.start("orch: editor")
  local v = vim.version()
  local version = ("%d.%d.%d"):format(v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. version)
  else
    health.error("Neovim >= 0.11 is required, found " .. version, { "Upgrade Neovim" })
  end
  if Config.setup_called then
    local errors = Config.validate(Config.options)
    if #errors == 0 then
      health.ok("setup() called, options valid")
    else
      health.error("invalid options: " .. table.concat(errors, "; "))
    end
  else
    health.warn("setup() not called: defaults in use", { "Call require('orch').setup({}) in your config" })
  end

  health.start("orch: binary")
  local cmd = Config.cmd
  local bin = vim.fn.exepath(cmd[1])
  if bin == "" then
    health.error(("`%s` not found (option 'cmd' = %s)"):format(cmd[1], vim.inspect(cmd)), {
      "Install orch (cargo install --path daemon) or set the option 'cmd' to its path",
    })
  else
    local ok, res = pcall(function()
      return vim.system({ bin, "--version" }, { text = true }):wait(5000)
    end)
    if ok and res.code == 0 then
      health.ok(("`%s` found: %s"):format(bin, vim.trim(res.stdout or "")))
    else
      local why = ok and vim.trim(res.stderr or "") or tostring(res)
      health.warn(("`%s` found but `--version` failed: %s"):format(bin, why))
    end
  end

  health.start("orch: daemon")
  local Client = require("orch.client")
  local root = Client.root()
  health.info("workspace: " .. root)
  local conn = Client.peek(root)
  if conn and conn:is_connected() then
    local s, err = conn:request_sync("orch/status", {}, 3000)
    if s then
      health.ok(("connected: orch %s, pid %s, %s agent(s), %s client(s), last event %s"):format(
        tostring(s.version),
        tostring(s.pid),
        tostring(type(s.agents) == "table" and s.agents.total or "?"),
        tostring(s.clients),
        tostring(s.lastSeq)
      ))
      for _, b in ipairs(s.backends or {}) do
        if b.available then
          health.ok(("backend %s available%s"):format(b.name, b.detail and (": " .. b.detail) or ""))
        else
          health.info(("backend %s unavailable%s"):format(b.name, b.detail and (": " .. b.detail) or ""))
        end
      end
    else
      health.error("connected, but orch/status failed: " .. require("orch.util").err_message(err))
    end
    health.info(("connections made: %d"):format(conn.connects))
  elseif bin ~= "" then
    local ok, res = pcall(function()
      return vim.system({ bin, "status", "--json" }, { text = true, cwd = root, env = Client.env(root) }):wait(5000)
    end)
    if ok and res.code == 0 then
      local decoded_ok, s = pcall(vim.json.decode, res.stdout or "")
      local pid = decoded_ok and type(s) == "table" and s.pid or "?"
      health.ok(("daemon reachable (pid %s); this Neovim is not connected yet"):format(tostring(pid)))
    else
      health.info(
        "no daemon answers for this workspace yet; the first :Orch command starts one"
          .. (ok and res.stderr and res.stderr ~= "" and (" (" .. vim.trim(res.stderr) .. ")") or "")
      )
    end
  end

  health.start("orch: tmux (optional)")
  if vim.fn.executable("tmux") == 1 then
    local ok, res = pcall(function()
      return vim.system({ "tmux", "-V" }, { text = true }):wait(3000)
    end)
    health.info(("tmux found: %s"):format(ok and vim.trim(res.stdout or "") or "version unknown"))
  else
    health.info("tmux not found: agents use the built-in pty backend")
  end
end

return M
