// One function per command. Each takes the arguments a view item or a caller passes (an agent,
// a decision, params) and asks the person for what is missing. Errors are shown with the
// daemon's message; the function then returns undefined.

import * as vscode from "vscode";

import { Ctx, errorMessage } from "./ctx";
import * as lsp_ext from "./lsp_ext";
import { AgentTerminal, attach } from "./terminal";

type AgentArg = lsp_ext.Agent | string | undefined;

/** Run a command body; show a failure with the daemon's words instead of throwing. */
async function guarded<T>(ctx: Ctx, what: string, body: () => Promise<T | undefined>): Promise<T | undefined> {
    try {
        return await body();
    } catch (e) {
        ctx.showError(`orch: ${what}: ${errorMessage(e)}`);
        return undefined;
    }
}

/** The agent an argument names (an Agent, an id or a name), else one the person picks. */
async function agentFrom(ctx: Ctx, arg: AgentArg, purpose: string, liveOnly: boolean): Promise<lsp_ext.Agent | undefined> {
    if (typeof arg === "object" && arg !== null && typeof arg.id === "string") {
        return ctx.store.agents.get(arg.id) ?? arg;
    }
    if (typeof arg === "string") {
        const known = ctx.store.agents.get(arg) ?? [...ctx.store.agents.values()].find((a) => a.name === arg);
        return known ?? (await ctx.request(lsp_ext.agentGet, { id: arg }));
    }
    await ctx.start();
    const agents = [...ctx.store.agents.values()].filter((a) => !liveOnly || lsp_ext.LIVE_STATES.has(a.state));
    if (agents.length === 0) {
        void ctx.show("info", liveOnly ? "orch: no agent is running" : "orch: there are no agents", []);
        return undefined;
    }
    const picked = await vscode.window.showQuickPick(
        agents.map((a) => ({ label: a.name, description: `${a.state} · ${a.kind}`, detail: a.command.join(" "), agent: a })),
        { title: `orch: ${purpose}`, placeHolder: "agent" },
    );
    return picked?.agent;
}

/** `Orch: Spawn Agent`: a kind from the daemon's configuration (or the params given). */
export function spawnAgent(ctx: Ctx) {
    return (arg?: string | lsp_ext.SpawnParams): Promise<lsp_ext.Agent | undefined> =>
        guarded(ctx, "spawn", async () => {
            let params: lsp_ext.SpawnParams;
            if (typeof arg === "string") {
                params = { kind: arg };
            } else if (arg && typeof arg === "object") {
                params = arg;
            } else {
                const config = await ctx.request(lsp_ext.configGet, {});
                const kinds = Object.keys(config.agents).sort();
                const picked = await vscode.window.showQuickPick(
                    kinds.map((k) => ({ label: k, description: config.agents[k]?.command.join(" ") ?? "" })),
                    { title: "orch: spawn an agent", placeHolder: "agent kind" },
                );
                if (!picked) {
                    return undefined;
                }
                params = { kind: picked.label };
            }
            const agent = await ctx.request(lsp_ext.agentSpawn, params);
            ctx.store.agents.set(agent.id, agent);
            ctx.fireChanged();
            void ctx.show("info", `orch: spawned ${agent.name} (${agent.kind})`, ["Attach"]).then((c) => {
                if (c === "Attach") {
                    attach(ctx, ctx.store.agents.get(agent.id) ?? agent);
                }
            });
            return agent;
        });
}

/** `Orch: Attach to Agent`: the agent's terminal in a terminal tab. */
export function attachAgent(ctx: Ctx) {
    return (arg?: AgentArg): Promise<AgentTerminal | undefined> =>
        guarded(ctx, "attach", async () => {
            const agent = await agentFrom(ctx, arg, "attach to an agent", false);
            return agent ? attach(ctx, agent) : undefined;
        });
}

/** `Orch: Send to Agent`: the editor's selection, else text the person types. */
export function sendToAgent(ctx: Ctx) {
    return (arg?: AgentArg, textArg?: string): Promise<boolean | undefined> =>
        guarded(ctx, "send", async () => {
            const agent = await agentFrom(ctx, arg, "send text to an agent", true);
            if (!agent) {
                return undefined;
            }
            let text = textArg;
            const editor = vscode.window.activeTextEditor;
            if (text === undefined && editor && !editor.selection.isEmpty) {
                text = editor.document.getText(editor.selection);
            }
            if (text === undefined) {
                text = await vscode.window.showInputBox({
                    title: `orch: send to ${agent.name}`,
                    prompt: "Text to type into the agent (Enter is pressed after it)",
                });
            }
            if (text === undefined) {
                return undefined;
            }
            await ctx.request(lsp_ext.agentSend, { id: agent.id, text, submit: true });
            return true;
        });
}

/** `Orch: Stop Agent`. */
export function stopAgent(ctx: Ctx) {
    return (arg?: AgentArg): Promise<lsp_ext.Agent | undefined> =>
        guarded(ctx, "stop", async () => {
            const agent = await agentFrom(ctx, arg, "stop an agent", true);
            if (!agent) {
                return undefined;
            }
            // The reply comes when the process has exited (after a grace period for SIGTERM).
            return vscode.window.withProgress(
                { location: vscode.ProgressLocation.Notification, title: `orch: stopping ${agent.name}…` },
                () => ctx.request(lsp_ext.agentStop, { id: agent.id }),
            );
        });
}

/** `Orch: Restart Agent`. */
export function restartAgent(ctx: Ctx) {
    return (arg?: AgentArg): Promise<lsp_ext.Agent | undefined> =>
        guarded(ctx, "restart", async () => {
            const agent = await agentFrom(ctx, arg, "restart an agent", false);
            if (!agent) {
                return undefined;
            }
            return vscode.window.withProgress(
                { location: vscode.ProgressLocation.Notification, title: `orch: restarting ${agent.name}…` },
                () => ctx.request(lsp_ext.agentRestart, { id: agent.id }),
            );
        });
}

/** `Orch: New Task`: title, prompt, priority and (optionally) an agent. */
export function newTask(ctx: Ctx) {
    return (arg?: lsp_ext.TaskCreateParams): Promise<lsp_ext.Task | undefined> =>
        guarded(ctx, "new task", async () => {
            let params = arg;
            if (!params) {
                const title = await vscode.window.showInputBox({ title: "orch: new task (1/4)", prompt: "Title" });
                if (!title) {
                    return undefined;
                }
                const prompt = await vscode.window.showInputBox({
                    title: "orch: new task (2/4)",
                    prompt: "Prompt: what the agent is told",
                    value: title,
                });
                if (prompt === undefined) {
                    return undefined;
                }
                const priority = await vscode.window.showQuickPick(["normal", "high", "urgent", "low"], {
                    title: "orch: new task (3/4)",
                    placeHolder: "priority",
                });
                if (!priority) {
                    return undefined;
                }
                const live = [...ctx.store.agents.values()].filter((a) => lsp_ext.LIVE_STATES.has(a.state) && !a.taskId);
                const agent = await vscode.window.showQuickPick(
                    [
                        { label: "(queue)", description: "the scheduler gives it to the next free agent", id: undefined },
                        ...live.map((a) => ({ label: a.name, description: `${a.state} · ${a.kind}`, id: a.id })),
                    ],
                    { title: "orch: new task (4/4)", placeHolder: "agent" },
                );
                if (!agent) {
                    return undefined;
                }
                params = { title, prompt, priority: priority as lsp_ext.Priority, agentId: agent.id };
            }
            const task = await ctx.request(lsp_ext.taskCreate, params);
            ctx.store.tasks.set(task.id, task);
            ctx.fireChanged();
            return task;
        });
}

/** Answer a decision: its options in a quick pick (or the choice given). */
export function decide(ctx: Ctx) {
    return (arg?: lsp_ext.Decision | string, choiceArg?: string): Promise<boolean | undefined> =>
        guarded(ctx, "decide", async () => {
            let decision = typeof arg === "string" ? ctx.store.decisions.get(arg) : arg;
            if (!decision) {
                decision = await pickDecision(ctx);
            }
            if (!decision) {
                return undefined;
            }
            const choice =
                choiceArg ??
                (await vscode.window.showQuickPick(decision.options, {
                    title: `orch: ${decision.title}`,
                    placeHolder: decision.detail.split("\n").slice(-1)[0] ?? "choice",
                }));
            if (!choice) {
                return undefined;
            }
            return ctx.answer(decision, choice);
        });
}

async function pickDecision(ctx: Ctx): Promise<lsp_ext.Decision | undefined> {
    await ctx.start();
    const pending = ctx.store.pendingDecisions();
    if (pending.length === 0) {
        void ctx.show("info", "orch: no decision is waiting for you", []);
        return undefined;
    }
    const picked = await vscode.window.showQuickPick(
        pending.map((d) => ({ label: d.title, description: d.options.join(" / "), detail: d.detail.split("\n").slice(-1)[0], d })),
        { title: "orch: pending decisions" },
    );
    return picked?.d;
}

/** `Orch: Show Decisions`: the Decisions view, and the pending ones to answer. */
export function showDecisions(ctx: Ctx) {
    return async (): Promise<void> => {
        await vscode.commands.executeCommand("orch.decisions.focus");
        const decision = await pickDecision(ctx);
        if (decision) {
            await decide(ctx)(decision);
        }
    };
}

/** `Orch: Show Events`: the output channel with every event. */
export function showEvents(ctx: Ctx) {
    return (): void => ctx.events.show(true);
}

/** `Orch: Show Status`: the daemon's `orch/status`, in words. */
export function showStatus(ctx: Ctx) {
    return (): Promise<lsp_ext.Status | undefined> =>
        guarded(ctx, "status", async () => {
            const s = await ctx.request(lsp_ext.status, {});
            const byState = Object.entries(s.agents.byState)
                .map(([k, v]) => `${v} ${k}`)
                .join(", ");
            const backends = s.backends.map((b) => `${b.name} ${b.available ? b.detail : `unavailable (${b.detail})`}`).join("; ");
            const text =
                `orch ${s.version} (pid ${s.pid}) serves ${s.workspace}: ${s.agents.total} agent(s)${byState ? ` (${byState})` : ""}, ` +
                `${ctx.store.pendingDecisions().length} pending decision(s), ${s.clients} client(s), last event #${s.lastSeq}, ` +
                `up ${Math.round(s.uptimeMs / 1000)} s; backends: ${backends}`;
            ctx.events.appendLine(text);
            void ctx.show("info", text, ["Show Events"]).then((c) => {
                if (c === "Show Events") {
                    ctx.events.show(true);
                }
            });
            return s;
        });
}

/** A gate's output tail in an editor. */
export function openGateOutput(ctx: Ctx) {
    return (task: lsp_ext.Task, result: lsp_ext.GateResult): Promise<vscode.TextEditor | undefined> =>
        guarded(ctx, "gate output", async () => {
            const header = `# task ${task.id} (${task.title}): gate ${result.name}, attempt ${result.attempt}: ${
                result.ok ? "passed" : "failed"
            }${result.exitCode === null ? "" : `, exit ${result.exitCode}`}, ${result.durationMs} ms\n\n`;
            const doc = await vscode.workspace.openTextDocument({ content: header + result.outputTail, language: "log" });
            return vscode.window.showTextDocument(doc, { preview: true });
        });
}

/** Reload every list from the daemon. */
export function refresh(ctx: Ctx) {
    return (): Promise<void> => ctx.refresh();
}
