// Entry point: builds the context for the workspace folder (the one with orch.toml, else the
// first), its views, status bar item and commands, and starts the client. `activate` returns
// the context, which the extension's own tests read.

import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

import * as commands from "./commands";
import { Config } from "./config";
import { Ctx } from "./ctx";
import { Review } from "./review";
import { StatusItem } from "./status";
import { viewOf } from "./terminal";
import { AgentsView, DecisionsView, TasksView } from "./views";

/** What `activate` returns: for tests and other extensions. */
export interface Api {
    ctx: Ctx | undefined;
    status: StatusItem | undefined;
    views: { agents: AgentsView; tasks: TasksView; decisions: DecisionsView } | undefined;
    /** Worktree reviews: the file list on screen and the diff editors' read-only sides. */
    review: Review | undefined;
    viewOf: typeof viewOf;
}

export function activate(context: vscode.ExtensionContext): Api {
    const folders = vscode.workspace.workspaceFolders ?? [];
    const folder = folders.find((f) => fs.existsSync(path.join(f.uri.fsPath, "orch.toml"))) ?? folders[0];
    const ids = [
        "orch.spawnAgent",
        "orch.attachAgent",
        "orch.sendToAgent",
        "orch.stopAgent",
        "orch.restartAgent",
        "orch.newTask",
        "orch.showDecisions",
        "orch.showEvents",
        "orch.showStatus",
        "orch.decide",
        "orch.openGateOutput",
        "orch.refresh",
        "orch.diff",
        "orch.merge",
        "orch.discard",
        "orch.pause",
        "orch.resume",
    ];
    if (!folder) {
        // orch serves a workspace: without a folder there is nothing to connect to.
        for (const id of ids) {
            context.subscriptions.push(
                vscode.commands.registerCommand(id, () =>
                    vscode.window.showErrorMessage("orch: open a folder first: orch serves one workspace folder"),
                ),
            );
        }
        return { ctx: undefined, status: undefined, views: undefined, review: undefined, viewOf };
    }

    const config = new Config();
    const ctx = new Ctx(config, folder);
    const status = new StatusItem(ctx);
    const agents = new AgentsView(ctx);
    const tasks = new TasksView(ctx);
    const decisions = new DecisionsView(ctx);
    const review = new Review(ctx);
    context.subscriptions.push(
        config,
        ctx,
        status,
        agents,
        tasks,
        decisions,
        review,
        vscode.window.registerTreeDataProvider("orch.agents", agents),
        vscode.window.registerTreeDataProvider("orch.tasks", tasks),
        vscode.window.registerTreeDataProvider("orch.decisions", decisions),
        vscode.commands.registerCommand("orch.spawnAgent", commands.spawnAgent(ctx)),
        vscode.commands.registerCommand("orch.attachAgent", commands.attachAgent(ctx)),
        vscode.commands.registerCommand("orch.sendToAgent", commands.sendToAgent(ctx)),
        vscode.commands.registerCommand("orch.stopAgent", commands.stopAgent(ctx)),
        vscode.commands.registerCommand("orch.restartAgent", commands.restartAgent(ctx)),
        vscode.commands.registerCommand("orch.newTask", commands.newTask(ctx)),
        vscode.commands.registerCommand("orch.showDecisions", commands.showDecisions(ctx)),
        vscode.commands.registerCommand("orch.showEvents", commands.showEvents(ctx)),
        vscode.commands.registerCommand("orch.showStatus", commands.showStatus(ctx)),
        vscode.commands.registerCommand("orch.decide", commands.decide(ctx)),
        vscode.commands.registerCommand("orch.openGateOutput", commands.openGateOutput(ctx)),
        vscode.commands.registerCommand("orch.refresh", commands.refresh(ctx)),
        vscode.commands.registerCommand("orch.diff", commands.diff(ctx, review)),
        vscode.commands.registerCommand("orch.merge", commands.merge(ctx)),
        vscode.commands.registerCommand("orch.discard", commands.discard(ctx)),
        vscode.commands.registerCommand("orch.pause", commands.pause(ctx)),
        vscode.commands.registerCommand("orch.resume", commands.resume(ctx)),
    );
    void ctx.start();
    return { ctx, status, views: { agents, tasks, decisions }, review, viewOf };
}

export function deactivate(): void {
    // The context is disposed with the extension's subscriptions; agents keep running.
}
