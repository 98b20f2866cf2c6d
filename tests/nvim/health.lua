-- Scenario: `:checkhealth orch` reports no ERROR, before the plugin connected (the daemon may not
-- run yet) and after; it names the binary's version and, once connected, the daemon.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

--- Run `:checkhealth orch` and return its report.
local function checkhealth()
  vim.cmd("checkhealth orch")
  local text = H.text(vim.api.nvim_get_current_buf())
  H.out("  | " .. text:gsub("\n", "\n  | "))
  return text
end

H.run(function()
  H.setup()
  local version = vim.trim(H.cli({ "--version" }).stdout or "")
  H.check("`orch --version` prints `orch <version>`", version:match("^orch %S+") ~= nil, version)

  local report = checkhealth()
  H.check(":checkhealth orch runs the orch checks", report:find("orch: binary", 1, true) ~= nil, report)
  H.check("it reports the Neovim version", report:find("Neovim " .. vim.version().major, 1, true) ~= nil)
  H.check("it reports the binary's version", version ~= "" and report:find(version, 1, true) ~= nil)
  H.check("it reports that setup() was called", report:find("setup() called", 1, true) ~= nil)
  H.check("it reports tmux (info)", report:find("tmux", 1, true) ~= nil)
  H.check("no ERROR before connecting", not report:find("ERROR", 1, true))
  H.check("checkhealth did not start a connection", #vim.lsp.get_clients({ name = "orch" }) == 0)

  local conn = require("orch").conn()
  local status = conn:request_sync("orch/status", {}, 20000)
  H.check("the plugin connects", status ~= nil)
  report = checkhealth()
  H.check("it reports the live connection", report:find("connected: orch", 1, true) ~= nil, report)
  H.check("no ERROR when connected", not report:find("ERROR", 1, true))
end)
