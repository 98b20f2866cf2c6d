// The three views of the orch container, as TreeDataProviders over the context's store. They
// never ask the daemon anything: they redraw when the store changes (events, list reloads).

import * as vscode from "vscode";

import { Ctx } from "./ctx";
import * as lsp_ext from "./lsp_ext";

const STATE_ICONS: Record<string, [string, string?]> = {
    starting: ["loading~spin"],
    running: ["play-circle", "charts.green"],
    busy: ["sync~spin", "charts.blue"],
    idle: ["circle-outline"],
    waiting: ["bell-dot", "charts.yellow"],
    exited: ["pass", "charts.green"],
    failed: ["error", "charts.red"],
    stopped: ["debug-stop"],
    lost: ["warning", "charts.orange"],
    unreachable: ["debug-disconnect", "charts.orange"],
    exiting: ["sign-out"],
};

function stateIcon(state: string): vscode.ThemeIcon {
    const [id, color] = STATE_ICONS[state] ?? ["question"];
    return new vscode.ThemeIcon(id, color ? new vscode.ThemeColor(color) : undefined);
}

/** "3m", "2h", "5d": how long ago `iso` was. */
export function age(iso: string, now = Date.now()): string {
    const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
    if (s < 60) {
        return `${s}s`;
    }
    if (s < 3600) {
        return `${Math.floor(s / 60)}m`;
    }
    if (s < 86400) {
        return `${Math.floor(s / 3600)}h`;
    }
    return `${Math.floor(s / 86400)}d`;
}

/** Base of the three providers: redraw on every store change. */
abstract class StoreView<T> implements vscode.TreeDataProvider<T>, vscode.Disposable {
    protected readonly emitter = new vscode.EventEmitter<T | undefined | void>();
    readonly onDidChangeTreeData = this.emitter.event;
    private readonly sub: vscode.Disposable;

    constructor(protected readonly ctx: Ctx) {
        this.sub = ctx.onDidChange(() => this.emitter.fire());
    }

    abstract getTreeItem(element: T): vscode.TreeItem;
    abstract getChildren(element?: T): T[];

    dispose(): void {
        this.sub.dispose();
        this.emitter.dispose();
    }
}

/** `orch.agents`: each agent with its state (icon and words), kind, task and age. */
export class AgentsView extends StoreView<lsp_ext.Agent> {
    getChildren(element?: lsp_ext.Agent): lsp_ext.Agent[] {
        if (element) {
            return [];
        }
        // Live agents first, then by creation.
        return [...this.ctx.store.agents.values()].sort((a, b) => {
            const la = lsp_ext.LIVE_STATES.has(a.state) ? 0 : 1;
            const lb = lsp_ext.LIVE_STATES.has(b.state) ? 0 : 1;
            return la - lb || a.createdAt.localeCompare(b.createdAt);
        });
    }

    getTreeItem(a: lsp_ext.Agent): vscode.TreeItem {
        const item = new vscode.TreeItem(a.name, vscode.TreeItemCollapsibleState.None);
        item.id = a.id;
        item.description = describeAgent(a, this.ctx.store.tasks.get(a.taskId ?? ""));
        item.iconPath = stateIcon(a.state);
        const why = this.ctx.store.evidence.get(a.id);
        item.tooltip = new vscode.MarkdownString(
            [
                `**${a.name}** (${a.id}) is **${a.state}**${why ? ` — ${why}` : ""}`,
                `kind \`${a.kind}\`, backend ${a.backend}, terminal ${a.terminalId}${a.pid ? `, pid ${a.pid}` : ""}`,
                `\`${a.command.join(" ")}\` in ${a.cwd}`,
                a.taskId ? `task ${a.taskId}` : "no task",
                ...(a.worktree ? [describeWorktree(a.worktree)] : []),
                `started ${a.createdAt}, ${a.restarts} restart(s)`,
            ].join("\n\n"),
        );
        item.contextValue = agentContext(a);
        item.command = { command: "orch.attachAgent", title: "Attach", arguments: [a] };
        return item;
    }
}

/** What the agents view says after an agent's name: `busy · claude · task: fix the build · 3m`. */
export function describeAgent(a: lsp_ext.Agent, task: lsp_ext.Task | undefined): string {
    const parts: string[] = [a.state, a.kind];
    if (a.worktree) {
        parts.push(worktreeLabel(a.worktree));
    }
    if (a.taskId) {
        parts.push(`task: ${task?.title ?? a.taskId}`);
    }
    if (a.exitCode !== undefined && !lsp_ext.LIVE_STATES.has(a.state)) {
        parts.push(`exit ${a.exitCode}`);
    }
    parts.push(age(a.createdAt));
    return parts.join(" · ");
}

/** An agent's worktree in the agents view: `orch/w1 (3)`, `orch/w1 (3, paused)`. */
export function worktreeLabel(w: lsp_ext.Worktree): string {
    return `${w.branch} (${w.changes}${w.paused ? ", paused" : ""})`;
}

function describeWorktree(w: lsp_ext.Worktree): string {
    const files = `${w.changes} file${w.changes === 1 ? "" : "s"} changed against \`${w.base}\``;
    return w.paused
        ? `worktree paused: branch \`${w.branch}\` kept, ${files} (resume checks it out again)`
        : `worktree \`${w.branch}\` in ${w.path}: ${files}`;
}

/**
 * The agents view's `viewItem` of an agent, for the menus: `agent.live` or `agent.ended`, then
 * `.worktree` or `.paused` when it has a worktree (`agent.ended.paused`).
 */
export function agentContext(a: lsp_ext.Agent): string {
    const life = lsp_ext.LIVE_STATES.has(a.state) ? "agent.live" : "agent.ended";
    if (!a.worktree) {
        return life;
    }
    return `${life}.${a.worktree.paused ? "paused" : "worktree"}`;
}

export type TaskNode =
    | { type: "state"; state: lsp_ext.TaskState; tasks: lsp_ext.Task[] }
    | { type: "task"; task: lsp_ext.Task }
    | { type: "gate"; task: lsp_ext.Task; result: lsp_ext.GateResult };

const TASK_STATES: lsp_ext.TaskState[] = [
    "escalated",
    "verifying",
    "running",
    "assigned",
    "pending",
    "failed",
    "done",
    "cancelled",
];

const TASK_ICONS: Record<lsp_ext.TaskState, [string, string?]> = {
    pending: ["circle-large-outline"],
    assigned: ["arrow-right"],
    running: ["sync~spin", "charts.blue"],
    verifying: ["beaker", "charts.yellow"],
    done: ["pass-filled", "charts.green"],
    failed: ["error", "charts.red"],
    escalated: ["report", "charts.orange"],
    cancelled: ["circle-slash"],
};

/** `orch.tasks`: tasks grouped by state, with priority, agent, attempts and gate results. */
export class TasksView extends StoreView<TaskNode> {
    getChildren(element?: TaskNode): TaskNode[] {
        if (!element) {
            const tasks = [...this.ctx.store.tasks.values()];
            return TASK_STATES.map((state) => ({
                type: "state" as const,
                state,
                tasks: tasks.filter((t) => t.state === state).sort(byPriorityThenAge),
            })).filter((n) => n.tasks.length > 0);
        }
        if (element.type === "state") {
            return element.tasks.map((task) => ({ type: "task" as const, task }));
        }
        if (element.type === "task") {
            return element.task.gateResults.map((result) => ({ type: "gate" as const, task: element.task, result }));
        }
        return [];
    }

    getTreeItem(n: TaskNode): vscode.TreeItem {
        if (n.type === "state") {
            const item = new vscode.TreeItem(`${n.state} (${n.tasks.length})`, vscode.TreeItemCollapsibleState.Expanded);
            item.id = `state:${n.state}`;
            const [icon, color] = TASK_ICONS[n.state];
            item.iconPath = new vscode.ThemeIcon(icon, color ? new vscode.ThemeColor(color) : undefined);
            return item;
        }
        if (n.type === "task") {
            const t = n.task;
            const item = new vscode.TreeItem(
                t.title,
                t.gateResults.length > 0 ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None,
            );
            item.id = t.id;
            const agent = t.agentId ? this.ctx.store.agents.get(t.agentId) : undefined;
            const parts = [t.priority, agent ? agent.name : t.agentId ? t.agentId : "no agent", `attempt ${t.attempts}/${t.maxAttempts}`];
            const last = lastResults(t);
            if (last.length > 0) {
                parts.push(last.map((r) => `${r.name} ${r.ok ? "✓" : "✗"}`).join(" "));
            }
            item.description = parts.join(" · ");
            item.tooltip = new vscode.MarkdownString(
                `**${t.title}** (${t.id}) is **${t.state}**\n\n${t.prompt}${t.summary ? `\n\nsummary: ${t.summary}` : ""}`,
            );
            item.contextValue = `task.${t.state}`;
            return item;
        }
        const r = n.result;
        const item = new vscode.TreeItem(`gate ${r.name}`, vscode.TreeItemCollapsibleState.None);
        item.id = `${n.task.id}:${r.name}:${r.attempt}`;
        item.description = `${r.ok ? "passed" : "failed"} · attempt ${r.attempt} · ${(r.durationMs / 1000).toFixed(1)} s${
            r.exitCode === null ? "" : ` · exit ${r.exitCode}`
        }`;
        item.iconPath = new vscode.ThemeIcon(
            r.ok ? "pass" : "error",
            new vscode.ThemeColor(r.ok ? "charts.green" : "charts.red"),
        );
        item.tooltip = r.outputTail;
        item.contextValue = r.ok ? "gate.passed" : "gate.failed";
        item.command = { command: "orch.openGateOutput", title: "Open Gate Output", arguments: [n.task, r] };
        return item;
    }
}

function lastResults(t: lsp_ext.Task): lsp_ext.GateResult[] {
    const latest = Math.max(0, ...t.gateResults.map((r) => r.attempt));
    return t.gateResults.filter((r) => r.attempt === latest);
}

const PRIORITY_ORDER: Record<string, number> = { urgent: 0, high: 1, normal: 2, low: 3 };

function byPriorityThenAge(a: lsp_ext.Task, b: lsp_ext.Task): number {
    return (PRIORITY_ORDER[a.priority] ?? 9) - (PRIORITY_ORDER[b.priority] ?? 9) || a.createdAt.localeCompare(b.createdAt);
}

/** `orch.decisions`: the pending decisions; selecting one offers its options. */
export class DecisionsView extends StoreView<lsp_ext.Decision> {
    getChildren(element?: lsp_ext.Decision): lsp_ext.Decision[] {
        if (element) {
            return [];
        }
        return this.ctx.store.pendingDecisions().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    }

    getTreeItem(d: lsp_ext.Decision): vscode.TreeItem {
        const item = new vscode.TreeItem(d.title, vscode.TreeItemCollapsibleState.None);
        item.id = d.id;
        item.description = `${d.options.join(" / ")} · ${age(d.createdAt)}`;
        item.iconPath = new vscode.ThemeIcon("question", new vscode.ThemeColor("charts.yellow"));
        item.tooltip = new vscode.MarkdownString(`**${d.title}**\n\n\`\`\`\n${d.detail}\n\`\`\``);
        item.contextValue = "decision";
        item.command = { command: "orch.decide", title: "Answer", arguments: [d] };
        return item;
    }
}
