--- Defines `:Orch`, and nothing else: the plugin loads its modules, and connects to the daemon,
--- only when a subcommand is first used.

if vim.g.loaded_orch then
  return
end
vim.g.loaded_orch = true

vim.api.nvim_create_user_command("Orch", function(cmd)
  require("orch.commands").run(cmd)
end, {
  nargs = "*",
  range = true,
  bang = true,
  desc = "orch: run and watch AI coding agents (:Orch help)",
  complete = function(lead, line, pos)
    return require("orch.commands").complete(lead, line, pos)
  end,
})
