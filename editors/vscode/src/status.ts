// The status bar item: agent counts by state and pending decisions, from the store. It appears
// once the client first runs (tests wait for it as the extension's readiness signal) and opens
// the orch views when clicked.

import * as vscode from "vscode";

import { Ctx } from "./ctx";
import * as lsp_ext from "./lsp_ext";

const ORDER = ["waiting", "unreachable", "busy", "running", "starting", "idle", "failed", "lost", "exited", "stopped"];

export class StatusItem implements vscode.Disposable {
    readonly item: vscode.StatusBarItem;
    private readonly sub: vscode.Disposable;

    constructor(private readonly ctx: Ctx) {
        this.item = vscode.window.createStatusBarItem("orch.status", vscode.StatusBarAlignment.Left, 10);
        this.item.name = "orch";
        this.item.command = "workbench.view.extension.orch";
        this.sub = ctx.onDidChange(() => this.update());
        this.update();
    }

    /** `orch: 1 waiting, 2 idle · 1 decision`. */
    static text(ctx: Ctx): string {
        switch (ctx.state) {
            case "reconnecting":
                return "orch: reconnecting…";
            case "failed":
                return "orch: not connected";
            case "down":
                return "orch: daemon stopped";
            case "stopped":
            case "starting":
                return "orch: starting…";
            case "running":
                break;
        }
        const counts = new Map<string, number>();
        for (const a of ctx.store.agents.values()) {
            counts.set(a.state, (counts.get(a.state) ?? 0) + 1);
        }
        const states = [...counts.keys()].sort((a, b) => rank(a) - rank(b));
        const agents = states.length === 0 ? "no agents" : states.map((s) => `${counts.get(s)} ${s}`).join(", ");
        const pending = ctx.store.pendingDecisions().length;
        return `orch: ${agents}${pending > 0 ? ` · ${pending} decision${pending === 1 ? "" : "s"}` : ""}`;
    }

    private update(): void {
        const ctx = this.ctx;
        if (ctx.connects === 0 && ctx.state !== "failed") {
            // Not shown before the first connection: its appearance means "ready".
            this.item.hide();
            return;
        }
        this.item.text = StatusItem.text(ctx);
        const live = [...ctx.store.agents.values()].filter((a) => lsp_ext.LIVE_STATES.has(a.state)).length;
        // Stopped on purpose: a click (any command) starts the daemon again.
        this.item.command = ctx.state === "down" ? "orch.showStatus" : "workbench.view.extension.orch";
        this.item.tooltip =
            ctx.state === "failed"
                ? (ctx.failure ?? "not connected")
                : ctx.state === "down"
                  ? "The orch daemon was stopped. Click, or run any orch command, to start it again."
                  : `orch daemon of ${ctx.serverWorkspace ?? ctx.root} (pid ${ctx.daemonPid ?? "?"}): ${live} live agent(s), ${ctx.store.pendingDecisions().length} pending decision(s), events up to #${ctx.store.lastSeq ?? 0}. Click to open the orch views.`;
        this.item.backgroundColor =
            ctx.state === "failed"
                ? new vscode.ThemeColor("statusBarItem.errorBackground")
                : ctx.store.pendingDecisions().length > 0
                  ? new vscode.ThemeColor("statusBarItem.warningBackground")
                  : undefined;
        this.item.show();
    }

    dispose(): void {
        this.sub.dispose();
        this.item.dispose();
    }
}

function rank(state: string): number {
    const i = ORDER.indexOf(state);
    return i < 0 ? ORDER.length : i;
}
