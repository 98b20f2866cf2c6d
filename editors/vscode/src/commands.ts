// One function per command. Each takes the arguments a view item or a caller passes (an agent,
// a decision, params) and asks the person for what is missing. Errors are shown with the
// daemon's message; the function then returns undefined.

import * as cp from "node:child_process";
import * as vscode from "vscode";

import { ResponseError } from "vscode-languageclient/node";

import { Ctx, errorMessage } from "./ctx";
import * as lsp_ext from "./lsp_ext";
import { Review } from "./review";
import { AgentTerminal, attach } from "./terminal";
import { worktreeLabel } from "./views";

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

/** Which agents a command offers when it has to ask, and what it says when there is none. */
interface Which {
    filter: (a: lsp_ext.Agent) => boolean;
    none: string;
}

const live = (a: lsp_ext.Agent): boolean => lsp_ext.LIVE_STATES.has(a.state);
const ANY: Which = { filter: () => true, none: "orch: there are no agents" };
const LIVE: Which = { filter: live, none: "orch: no agent is running" };

/** The agent an argument names (an Agent, an id or a name), else one the person picks. */
async function agentFrom(ctx: Ctx, arg: AgentArg, purpose: string, which: Which): Promise<lsp_ext.Agent | undefined> {
    if (typeof arg === "object" && arg !== null && typeof arg.id === "string") {
        return ctx.store.agents.get(arg.id) ?? arg;
    }
    if (typeof arg === "string") {
        const known = ctx.store.agents.get(arg) ?? [...ctx.store.agents.values()].find((a) => a.name === arg);
        return known ?? (await ctx.request(lsp_ext.agentGet, { id: arg }));
    }
    await ctx.start();
    const agents = [...ctx.store.agents.values()].filter(which.filter);
    if (agents.length === 0) {
        void ctx.show("info", which.none, []);
        return undefined;
    }
    const picked = await vscode.window.showQuickPick(
        agents.map((a) => ({
            label: a.name,
            description: [a.state, a.kind, ...(a.worktree ? [worktreeLabel(a.worktree)] : [])].join(" · "),
            detail: a.command.join(" "),
            agent: a,
        })),
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
                const kindDefault = config.agents[picked.label]?.worktree === true;
                const where = await askWhere(ctx, kindDefault);
                if (where === undefined) {
                    return undefined;
                }
                if (where !== kindDefault) {
                    params.worktree = where;
                }
            }
            // In a worktree the reply comes once the checkout is made and prepared (setup commands).
            const spawn = (): Promise<lsp_ext.Agent> => ctx.request(lsp_ext.agentSpawn, params);
            const agent = params.worktree
                ? await vscode.window.withProgress(
                      { location: vscode.ProgressLocation.Notification, title: `orch: spawning ${params.kind ?? "an agent"} in a git worktree…` },
                      spawn,
                  )
                : await spawn();
            ctx.store.agents.set(agent.id, agent);
            ctx.fireChanged();
            const where = agent.worktree ? ` on ${agent.worktree.branch}` : "";
            void ctx.show("info", `orch: spawned ${agent.name} (${agent.kind})${where}`, ["Attach"]).then((c) => {
                if (c === "Attach") {
                    attach(ctx, ctx.store.agents.get(agent.id) ?? agent);
                }
            });
            return agent;
        });
}

/** Whether `dir` is inside a git work tree (false when git is missing). */
function inGitRepo(dir: string): Promise<boolean> {
    return new Promise((resolve) => {
        cp.execFile("git", ["rev-parse", "--is-inside-work-tree"], { cwd: dir, timeout: 10_000 }, (err, stdout) =>
            resolve(!err && String(stdout).trim() === "true"),
        );
    });
}

/**
 * Spawn: in the workspace folder or in a git worktree of its own? Asked only in a git
 * repository; the kind's own `worktree` setting comes first. Undefined when dismissed.
 */
async function askWhere(ctx: Ctx, kindDefault: boolean): Promise<boolean | undefined> {
    if (!(await inGitRepo(ctx.root))) {
        return kindDefault;
    }
    const items = [
        { label: "in the workspace folder", description: ctx.root, worktree: false },
        {
            label: "in a git worktree",
            description: "its own checkout on a new branch orch/<name>",
            detail: "review its changes with Orch: Review Agent's Changes, then merge or discard them",
            worktree: true,
        },
    ];
    if (kindDefault) {
        items.reverse();
    }
    const picked = await vscode.window.showQuickPick(items, { title: "orch: spawn an agent: where should it work?" });
    return picked?.worktree;
}

/** `Orch: Attach to Agent`: the agent's terminal in a terminal tab. */
export function attachAgent(ctx: Ctx) {
    return (arg?: AgentArg): Promise<AgentTerminal | undefined> =>
        guarded(ctx, "attach", async () => {
            const agent = await agentFrom(ctx, arg, "attach to an agent", ANY);
            return agent ? attach(ctx, agent) : undefined;
        });
}

/** `Orch: Send to Agent`: the editor's selection, else text the person types. */
export function sendToAgent(ctx: Ctx) {
    return (arg?: AgentArg, textArg?: string): Promise<boolean | undefined> =>
        guarded(ctx, "send", async () => {
            const agent = await agentFrom(ctx, arg, "send text to an agent", LIVE);
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
            const agent = await agentFrom(ctx, arg, "stop an agent", LIVE);
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
            const agent = await agentFrom(ctx, arg, "restart an agent", ANY);
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

// Worktrees: review, merge, discard, pause, resume (docs/protocol.md, Worktrees).

const hasWorktree = (a: lsp_ext.Agent): boolean => a.worktree !== undefined;
const WORKTREE: Which = { filter: hasWorktree, none: "orch: no agent has a worktree (spawn one in a git worktree)" };

/**
 * `Orch: Review Agent's Changes`: the files the agent's worktree changed against its base, each
 * opened in the diff editor (the base on the left, the worktree's file on the right). With
 * `file` (a path relative to the worktree), that file's diff at once. Resolves with the diff.
 */
export function diff(ctx: Ctx, review: Review) {
    return (arg?: AgentArg, file?: string): Promise<lsp_ext.DiffResult | undefined> =>
        guarded(ctx, "diff", async () => {
            const agent = await agentFrom(ctx, arg, "review an agent's changes", WORKTREE);
            if (!agent) {
                return undefined;
            }
            const result = await ctx.request(lsp_ext.agentDiff, { id: agent.id });
            if (result.files.length === 0) {
                void ctx.show("info", `orch: ${agent.name} has no changes: ${result.branch} is where ${result.base} is`, []);
                return result;
            }
            await review.open(agent, result, typeof file === "string" ? file : undefined);
            return result;
        });
}

const STRATEGIES: { label: lsp_ext.MergeStrategy; description: string }[] = [
    { label: "squash", description: "one new commit on the base with all of the agent's work" },
    { label: "merge", description: "a merge commit (--no-ff) keeping the branch's commits" },
    { label: "rebase", description: "the branch's commits replayed onto the base, which is fast-forwarded" },
];

/** The conflicting files of a failed merge (`data.files` of its -32003), or undefined. */
export function conflictFiles(e: unknown): string[] | undefined {
    if (!(e instanceof ResponseError) || e.code !== lsp_ext.errors.conflict) {
        return undefined;
    }
    const files = (e.data as { files?: unknown } | undefined)?.files;
    return Array.isArray(files) && files.length > 0 ? files.map(String) : undefined;
}

/**
 * `Orch: Merge Agent's Worktree`: land the agent's branch in its base (the branch checked out in
 * the workspace) with the strategy picked. What the agent left uncommitted is committed first. A
 * conflict leaves the workspace as it was and names the files.
 */
export function merge(ctx: Ctx) {
    return (arg?: AgentArg, strategyArg?: lsp_ext.MergeStrategy): Promise<{ commit: string; files: string[] } | undefined> =>
        guarded(ctx, "merge", async () => {
            const agent = await agentFrom(ctx, arg, "merge an agent's worktree into its base", WORKTREE);
            if (!agent) {
                return undefined;
            }
            const base = agent.worktree?.base ?? "its base";
            // (A view's menu passes the item only, or the selection after it: not a strategy.)
            let strategy = typeof strategyArg === "string" ? strategyArg : undefined;
            if (!strategy) {
                const picked = await vscode.window.showQuickPick(STRATEGIES, {
                    title: `orch: merge ${agent.name}${agent.worktree ? ` (${agent.worktree.branch})` : ""} into ${base}`,
                    placeHolder: "how to land it",
                });
                if (!picked) {
                    return undefined;
                }
                strategy = picked.label;
            }
            const how = strategy;
            try {
                const landed = await vscode.window.withProgress(
                    { location: vscode.ProgressLocation.Notification, title: `orch: merging ${agent.name} into ${base} (${how})…` },
                    () => ctx.request(lsp_ext.agentMerge, { id: agent.id, strategy: how }),
                );
                const n = landed.files.length;
                void ctx.show(
                    "info",
                    `orch: merged ${agent.name} (${how}) into ${base}: ${landed.commit.slice(0, 12)}, ${n} file${n === 1 ? "" : "s"}`,
                    [],
                );
                return landed;
            } catch (e) {
                const files = conflictFiles(e);
                if (!files) {
                    throw e;
                }
                ctx.events.appendLine(`merge of ${agent.name} (${how}) conflicts in: ${files.join(", ")}`);
                const text = `orch: merge: ${errorMessage(e)}. Files in conflict (${files.length}): ${files.join(", ")}`;
                void ctx.show("error", text, ["Review Changes"]).then((c) => {
                    if (c === "Review Changes") {
                        void vscode.commands.executeCommand("orch.diff", agent);
                    }
                });
                return undefined;
            }
        });
}

/**
 * `Orch: Discard Agent's Worktree`: remove a stopped agent's worktree and branch. Work that was
 * never merged is not thrown away unless `force`: the daemon asks first with a decision (shown
 * like every decision), and says so.
 */
export function discard(ctx: Ctx) {
    return (arg?: AgentArg, opts?: { force?: boolean }): Promise<boolean | undefined> =>
        guarded(ctx, "discard", async () => {
            const agent = await agentFrom(ctx, arg, "discard an agent's worktree and branch", {
                filter: (a) => hasWorktree(a) && !live(a),
                none: "orch: no stopped agent has a worktree (stop the agent first)",
            });
            if (!agent) {
                return undefined;
            }
            let force = opts && typeof opts.force === "boolean" ? opts.force : undefined;
            if (force === undefined) {
                const branch = agent.worktree?.branch ?? "its branch";
                const picked = await vscode.window.showQuickPick(
                    [
                        { label: "Discard", description: "work never merged is asked about first (a decision)", force: false },
                        {
                            label: "Discard, unmerged work included",
                            description: "force: uncommitted files and unmerged commits are lost, without asking",
                            force: true,
                        },
                    ],
                    { title: `orch: discard ${agent.name}'s worktree and ${branch}` },
                );
                if (!picked) {
                    return undefined;
                }
                force = picked.force;
            }
            try {
                await ctx.request(lsp_ext.agentDiscard, { id: agent.id, ...(force ? { force: true } : {}) });
            } catch (e) {
                // The refusal names the decision it raised; the decision arrives as a notification.
                const decision = e instanceof ResponseError && e.code === lsp_ext.errors.conflict ? /decision (d-\d+)/.exec(e.message)?.[1] : undefined;
                if (!decision) {
                    throw e;
                }
                void ctx.show("warning", `orch: discard: ${e instanceof Error ? e.message : String(e)}`, ["Answer"]).then((c) => {
                    if (c === "Answer") {
                        void vscode.commands.executeCommand("orch.decide", decision);
                    }
                });
                return false;
            }
            void ctx.show("info", `orch: discarded the worktree and branch of ${agent.name}`, []);
            return true;
        });
}

/** `Orch: Pause Agent's Worktree`: commit what is left, remove the checkout, keep the branch. */
export function pause(ctx: Ctx) {
    return (arg?: AgentArg): Promise<lsp_ext.Agent | undefined> =>
        guarded(ctx, "pause", async () => {
            const agent = await agentFrom(ctx, arg, "pause an agent's worktree", {
                filter: (a) => hasWorktree(a) && !a.worktree?.paused && !live(a),
                none: "orch: no stopped agent has a worktree to pause (stop the agent first)",
            });
            if (!agent) {
                return undefined;
            }
            const paused = await ctx.request(lsp_ext.agentPause, { id: agent.id });
            ctx.store.agents.set(paused.id, paused);
            ctx.fireChanged();
            void ctx.show("info", `orch: paused ${paused.name}: its checkout is removed, branch ${paused.worktree?.branch ?? ""} kept`, []);
            return paused;
        });
}

/** `Orch: Resume Agent's Worktree`: check the paused branch out again and restart the agent there. */
export function resume(ctx: Ctx) {
    return (arg?: AgentArg): Promise<lsp_ext.Agent | undefined> =>
        guarded(ctx, "resume", async () => {
            const agent = await agentFrom(ctx, arg, "resume an agent's worktree", {
                filter: (a) => a.worktree?.paused === true,
                none: "orch: no agent's worktree is paused",
            });
            if (!agent) {
                return undefined;
            }
            const resumed = await vscode.window.withProgress(
                { location: vscode.ProgressLocation.Notification, title: `orch: resuming ${agent.name}…` },
                () => ctx.request(lsp_ext.agentResume, { id: agent.id }),
            );
            ctx.store.agents.set(resumed.id, resumed);
            ctx.fireChanged();
            void ctx.show("info", `orch: resumed ${resumed.name} in ${resumed.worktree?.path ?? resumed.cwd}`, []);
            return resumed;
        });
}
