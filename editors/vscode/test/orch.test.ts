// Integration tests inside the real VS Code extension host, against a real `orch` daemon for a
// temporary workspace (tests/e2e/vscode.rs makes it: an orch.toml with a `shell` kind and an
// `asker` kind whose program asks `Proceed? [y/N]`, and its own ORCH_RUNTIME_DIR, ORCH_STATE_DIR
// and HOME in the environment the extension host inherits, `orch` on PATH). The daemon is
// started by the extension's own `orch lsp`. The tests run in order and share the workspace.

import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";

import type { Api } from "../src/main";
import type { Agent, Decision, OrchEvent, Page, Task } from "../src/lsp_ext";
import { EXTENSION_ID, agentRows, api, call, ctxOf, orch, orchJson, waitFor, workspace } from "./helpers";

/** The daemon's event log from `since` on, as seqs. */
function daemonLog(since: number): number[] {
    const log: number[] = [];
    for (;;) {
        const page = call<Page<OrchEvent>>("orch/events/query", { since, limit: 1000 });
        log.push(...page.items.map((e) => e.seq));
        if (!page.nextCursor || page.items.length === 0) {
            return log;
        }
        since = Number(page.nextCursor);
    }
}

/** Every event of the daemon's log since the first one the extension saw, each applied once, in order. */
async function assertAppliedIsLog(ctx: NonNullable<Api["ctx"]>): Promise<void> {
    const log = daemonLog(ctx.store.applied[0]! - 1);
    await waitFor("the extension to have applied the daemon's last event", () => ctx.store.lastSeq === log[log.length - 1]);
    assert.deepEqual(ctx.store.applied, log, "applied seqs are exactly the daemon's log from the first one seen");
    assert.deepEqual(ctx.store.gaps, []);
    assert.equal(new Set(ctx.store.applied).size, ctx.store.applied.length);
}

/**
 * Record the text of every error notification shown from now on: the extension's and those of its
 * language client library (the extension and its tests share one `vscode` API object).
 */
function recordErrors(): { texts: string[]; restore: () => void } {
    const w = vscode.window as { showErrorMessage: (message: string, ...rest: unknown[]) => unknown };
    const original = w.showErrorMessage;
    const texts: string[] = [];
    w.showErrorMessage = (message: string, ...rest: unknown[]) => {
        texts.push(message);
        return original.call(vscode.window, message, ...rest);
    };
    return { texts, restore: () => (w.showErrorMessage = original) };
}

/** Whether something accepts connections on the unix socket `path`. */
function answers(path: string): Promise<boolean> {
    return new Promise((resolve) => {
        const s = net.connect(path);
        s.once("connect", () => {
            s.destroy();
            resolve(true);
        });
        s.once("error", () => resolve(false));
    });
}

describe("orch extension", () => {
    let a: Api;
    let shell: Agent;

    it("activates on a workspace with orch.toml and shows its status bar item once connected", async () => {
        a = await api();
        const ctx = ctxOf(a);
        // Activated by the workspace's orch.toml or a command, never on every start-up.
        const events = (vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as { activationEvents: string[] }).activationEvents;
        assert.ok(events.includes("workspaceContains:orch.toml"));
        assert.deepEqual(events.filter((e) => e !== "workspaceContains:orch.toml" && !e.startsWith("onCommand:orch.")), []);
        const state = await waitFor("the client to start", () => ctx.state !== "starting" && ctx.state !== "stopped" && ctx.state, 60_000);
        assert.equal(state, "running", `the client runs (${ctx.failure ?? ""})`);
        assert.ok(a.status, "a status bar item");
        assert.match(a.status.item.text, /^orch: no agents$/);
        assert.equal(ctx.serverWorkspace, workspace());
        // The commands a person finds in the palette are registered.
        const commands = await vscode.commands.getCommands(true);
        for (const c of ["spawnAgent", "attachAgent", "sendToAgent", "stopAgent", "restartAgent", "newTask", "showDecisions", "showEvents", "showStatus"]) {
            assert.ok(commands.includes(`orch.${c}`), `command orch.${c}`);
        }
    });

    it("spawns an agent with Orch: Spawn Agent, seen by the daemon and by the agents view", async () => {
        const ctx = ctxOf(a);
        const agent = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", "shell");
        assert.ok(agent, `spawn returned an agent; shown: ${JSON.stringify(ctx.shown.slice(-3))}`);
        shell = agent;
        const listed = orchJson<Agent[] | Page<Agent>>("agent", "list");
        const items = Array.isArray(listed) ? listed : listed.items;
        assert.ok(items.some((x) => x.id === agent.id && x.kind === "shell"), `orch agent list has ${agent.id}: ${JSON.stringify(items)}`);
        // The view follows the agent's state from orch/event: quiet bash becomes idle.
        await waitFor("the agents view to show the shell idle", () =>
            agentRows(a).find((r) => r.startsWith(`${agent.name}: idle · shell`)),
        );
        assert.match(a.status!.item.text, /^orch: 1 idle$/);
    });

    it("follows orch/event: an agent spawned by another client and its state changes appear in the view", async () => {
        const ctx = ctxOf(a);
        const before = ctx.store.lastSeq ?? 0;
        const out = orchJson<Agent>("agent", "spawn", "shell", "--name", "other-client");
        await waitFor("the agent spawned by the CLI in the view", () => agentRows(a).find((r) => r.startsWith("other-client: ")));
        // Busy while it prints, idle when quiet: both come as agent.state events.
        orch("agent", "send", out.id, "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.3; done");
        await waitFor("other-client busy in the view", () => agentRows(a).find((r) => r.startsWith("other-client: busy")));
        await waitFor("other-client idle again in the view", () => agentRows(a).find((r) => r.startsWith("other-client: idle")));
        assert.ok((ctx.store.lastSeq ?? 0) > before, "events were applied");
        // Stop it through the command: the view shows it stopped.
        const stopped = await vscode.commands.executeCommand<Agent | undefined>("orch.stopAgent", out.id);
        assert.equal(stopped?.state, "stopped");
        await waitFor("other-client stopped in the view", () => agentRows(a).find((r) => r.startsWith("other-client: stopped")));
    });

    it("attaches a terminal that paints the screen, shows output, sends keys and follows the tab's size", async () => {
        const ctx = ctxOf(a);
        orch("agent", "send", shell.id, "echo before-attach-$((2*3))");
        await waitFor("before-attach on the screen", () => orch("agent", "screen", shell.id).includes("before-attach-6"));
        const view = await vscode.commands.executeCommand<import("../src/terminal").AgentTerminal | undefined>(
            "orch.attachAgent",
            shell,
        );
        assert.ok(view, "attach returned a view");
        // The repaint: what was on the screen before attaching.
        await waitFor("the painted screen in the terminal", () => view.transcript.includes("before-attach-6"));
        // Output that arrives while attached.
        orch("agent", "send", shell.id, "echo from-cli-$((6*7))");
        await waitFor("live output in the terminal", () => view.transcript.includes("from-cli-42"));
        // Keys typed into the VS Code terminal reach the agent.
        view.terminal.sendText("echo typed-$((7*6))", true);
        await waitFor("the typed command's output in the terminal", () => view.transcript.includes("typed-42"));
        assert.ok(orch("agent", "screen", shell.id).includes("typed-42"), "the daemon's screen has it too");
        // The daemon's terminal has the size of the tab.
        const size = await waitFor("the tab's size", () => view.size);
        await waitFor(`the agent's terminal resized to ${size.cols}x${size.rows}`, () => {
            const terms = call<Page<{ id: string; cols: number; rows: number }>>("orch/terminal/list");
            const t = terms.items.find((x) => x.id === shell.terminalId);
            return t && t.cols === size.cols && t.rows === size.rows;
        });
        // Closing the tab leaves the agent running.
        view.terminal.dispose();
        await waitFor("the view closed", () => view.closed);
        const after = call<Agent>("orch/agent/get", { id: shell.id });
        assert.ok(["idle", "busy", "running"].includes(after.state), `agent still live after closing its tab: ${after.state}`);
        assert.equal(ctx.terminals.size, 0, "no terminal is followed any more");
    });

    it("shows a decision and resolves it; a late answer is told another client answered", async () => {
        const ctx = ctxOf(a);
        const asker = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", { kind: "asker", name: "asker-1" });
        assert.ok(asker);
        const decision = await waitFor("the decision in the Decisions view", () =>
            a.views!.decisions.getChildren().find((d: Decision) => d.source.id === asker.id),
        );
        assert.match(String(a.views!.decisions.getTreeItem(decision).label), /asker-1 is waiting for an answer/);
        await waitFor("the status bar to count the decision", () => /· 1 decision$/.test(a.status!.item.text));
        // The prompt arrived as window/showMessageRequest: a notification with one button per option.
        await waitFor("the decision's notification", () =>
            ctx.shown.find((s) => s.text.includes("asker-1 is waiting for an answer") && s.actions.join(",") === "approve,deny"),
        );
        // Answer it as the Decisions view does.
        const won = await vscode.commands.executeCommand<boolean | undefined>("orch.decide", decision, "approve");
        assert.equal(won, true);
        await waitFor("the agent to get the answer's keys", () => orch("agent", "screen", asker.id).includes("answer=y"));
        await waitFor("the decision gone from the view", () => a.views!.decisions.getChildren().length === 0);
        const resolved = call<Page<Decision>>("orch/decision/list", { state: "resolved" }).items.find((d) => d.id === decision.id);
        assert.equal(resolved?.choice, "approve");

        // A second question, answered first by another client (the CLI): VS Code's late answer
        // is refused by the daemon and the person is told.
        const asker2 = orchJson<Agent>("agent", "spawn", "asker", "--name", "asker-2");
        const d2 = await waitFor("the second decision", () => ctx.store.pendingDecisions().find((d) => d.source.id === asker2.id));
        orch("decision", "resolve", d2.id, "deny");
        const late = await ctx.answer(d2, "approve");
        assert.equal(late, false);
        const told = ctx.shown.find((s) => s.text.includes('"asker-2 is waiting for an answer" was already answered by another client'));
        assert.ok(told, `a message says another client answered: ${JSON.stringify(ctx.shown.slice(-3))}`);
        assert.equal(told.level, "warning");
        await waitFor("the first answer (deny) to reach asker-2", () => orch("agent", "screen", asker2.id).includes("answer=n"));
    });

    it("shows a task's state, gate results and progress; a failed gate's output opens in an editor; the escalation is answered", async () => {
        const ctx = ctxOf(a);
        const views = a.views!;
        const worker = orchJson<Agent>("agent", "spawn", "shell", "--name", "worker");
        await waitFor("worker idle", () => agentRows(a).find((r) => r.startsWith("worker: idle")));
        const task = await vscode.commands.executeCommand<Task | undefined>("orch.newTask", {
            title: "make it pass",
            prompt: "echo working-on-it",
            agentId: worker.id,
            maxAttempts: 1,
            gates: [{ name: "check", command: ["sh", "-c", "echo gate-broke-$((40+2)); exit 3"], timeoutS: 30 }],
        });
        assert.ok(task, `a task; shown: ${JSON.stringify(ctx.shown.slice(-2))}`);
        await waitFor("the prompt typed into the worker", () => orch("agent", "screen", worker.id).includes("working-on-it"));
        orch("task", "complete", task.id);
        // The only attempt fails its gate: escalated, shown under its state with the gate's result.
        const taskNode = await waitFor("the task escalated in the Tasks view", () => {
            const group = views.tasks.getChildren().find((n) => n.type === "state" && n.state === "escalated");
            return group && views.tasks.getChildren(group).find((n) => n.type === "task" && n.task.id === task.id);
        });
        const item = views.tasks.getTreeItem(taskNode);
        assert.equal(item.label, "make it pass");
        assert.match(String(item.description), /^normal · worker · attempt 1\/1 · check ✗$/);
        const gate = views.tasks.getChildren(taskNode)[0];
        assert.ok(gate);
        const gateItem = views.tasks.getTreeItem(gate);
        assert.equal(gateItem.label, "gate check");
        assert.match(String(gateItem.description), /^failed · attempt 1 · [0-9.]+ s · exit 3$/);
        // Selecting the failed gate opens its output in an editor.
        assert.ok(gateItem.command);
        const editor = await vscode.commands.executeCommand<vscode.TextEditor | undefined>(
            gateItem.command.command,
            ...(gateItem.command.arguments ?? []),
        );
        assert.ok(editor, "an editor opened");
        assert.match(editor.document.getText(), /gate check, attempt 1: failed, exit 3/);
        assert.match(editor.document.getText(), /gate-broke-42/);
        await vscode.commands.executeCommand("workbench.action.closeActiveEditor");
        // $/progress for the task: begun with its title, the gate reported, ended.
        const token = `orch-task-${task.id}`;
        await waitFor("the task's progress to end", () => ctx.progress.find((p) => p.token === token && p.kind === "end"));
        const mine = ctx.progress.filter((p) => p.token === token);
        assert.equal(mine[0]?.kind, "begin");
        assert.equal(mine[0]?.title, "orch task make it pass");
        assert.ok(mine.some((p) => p.kind === "report" && /gate check failed/.test(p.message ?? "")), JSON.stringify(mine));
        // The escalation is a decision; accepting it completes the task.
        const d = await waitFor("the escalation decision", () => ctx.store.pendingDecisions().find((x) => x.source.id === task.id));
        assert.deepEqual(d.options, ["retry", "reassign", "accept", "cancel"]);
        assert.equal(await vscode.commands.executeCommand<boolean>("orch.decide", d.id, "accept"), true);
        await waitFor("the task done in the Tasks view", () => {
            const group = views.tasks.getChildren().find((n) => n.type === "state" && n.state === "done");
            return group && views.tasks.getChildren(group).some((n) => n.type === "task" && n.task.id === task.id);
        });
    });

    it("reconnects after the daemon is killed, replaying from the last seq without duplicates or gaps", async () => {
        const ctx = ctxOf(a);
        const connects = ctx.connects;
        const pid = ctx.daemonPid;
        assert.ok(pid, "the daemon's pid is known");
        const view = await vscode.commands.executeCommand<import("../src/terminal").AgentTerminal | undefined>(
            "orch.attachAgent",
            shell,
        );
        assert.ok(view);
        await waitFor("the attached view painted", () => view.transcript.includes("typed-42"));
        const seqBefore = ctx.store.lastSeq ?? 0;
        process.kill(pid, "SIGKILL");
        // `orch lsp` ends with the daemon's socket; the client restarts it, which starts a new daemon.
        await waitFor("the client to reconnect to a new daemon", () => ctx.connects === connects + 1 && ctx.state === "running", 60_000);
        assert.notEqual(ctx.daemonPid, pid);
        // What happened while disconnected came by replay: the new daemon's start, the agents lost.
        await waitFor("the killed daemon's agents shown lost", () => agentRows(a).find((r) => r.startsWith(`${shell.name}: lost`)));
        const replayed = ctx.store.applied.filter((s) => s > seqBefore);
        assert.ok(replayed.length > 0, "events after the kill were applied");
        // Live events after the reconnect arrive too.
        const next = orchJson<Agent>("agent", "spawn", "shell", "--name", "after-reconnect");
        await waitFor("an agent spawned after the reconnect in the view", () => agentRows(a).find((r) => r.startsWith("after-reconnect: ")));
        await waitFor("after-reconnect idle", () => agentRows(a).find((r) => r.startsWith("after-reconnect: idle")));
        // Every event of the daemon's log, each exactly once, in order: none missed, none twice.
        await assertAppliedIsLog(ctx);
        // The attached view says its agent is gone.
        await waitFor("the view to say the agent was lost", () => view.transcript.includes(`agent ${shell.name} lost`));
        // Orch: Restart Agent: the open view follows the agent into its new terminal.
        const restarted = await vscode.commands.executeCommand<Agent | undefined>("orch.restartAgent", shell.id);
        assert.ok(restarted && restarted.terminalId !== shell.terminalId, "restarted in a new terminal");
        await waitFor("the view to follow the new terminal", () => view.terminalId === restarted.terminalId);
        view.terminal.sendText("echo restarted-$((5*5))", true);
        await waitFor("the restarted agent's output in the same view", () => view.transcript.includes("restarted-25"));
        view.terminal.dispose();
        void next;
    });

    it("after orch stop, leaves the daemon stopped until the next command, which starts it and replays what was missed", async () => {
        const ctx = ctxOf(a);
        const connects = ctx.connects;
        orch("stop");
        await waitFor("the extension to see the daemon stopped", () => ctx.state === "down");
        assert.equal(a.status!.item.text, "orch: daemon stopped");
        // Not started again behind the person's back.
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal(ctx.state, "down");
        assert.equal(await answers(orch("socket-path").trim()), false, "no daemon listens on the workspace's socket");
        // Any command starts it again.
        const agent = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", { kind: "shell", name: "after-stop" });
        assert.ok(agent, `spawned after the stop; shown: ${JSON.stringify(ctx.shown.slice(-2))}`);
        assert.equal(ctx.state, "running");
        assert.equal(ctx.connects, connects + 1);
        await waitFor("after-stop idle in the view", () => agentRows(a).find((r) => r.startsWith("after-stop: idle")));
        // The stop's events and the new daemon's were applied once each, in order.
        await assertAppliedIsLog(ctx);
        assert.match(a.status!.item.text, /^orch: 1 idle(, |$)/);
    });

    it("says clearly when the orch binary is missing, with a way to fix it, and recovers when fixed", async () => {
        const ctx = ctxOf(a);
        const settings = vscode.workspace.getConfiguration("orch");
        await settings.update("path", "/nonexistent/bin/orch", vscode.ConfigurationTarget.Workspace);
        try {
            await waitFor("the connection to fail", () => ctx.state === "failed");
            const shown = ctx.shown[ctx.shown.length - 1];
            assert.ok(shown);
            assert.equal(shown.level, "error");
            assert.match(shown.text, /cannot find the orch binary `\/nonexistent\/bin\/orch` \(setting orch\.path\)/);
            assert.deepEqual(shown.actions, ["Open Settings", "Show Log"]);
            assert.equal(a.status!.item.text, "orch: not connected");
            // A command now fails with the same words instead of hanging.
            const agent = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", "shell");
            assert.equal(agent, undefined);
            assert.match(ctx.shown[ctx.shown.length - 1]!.text, /cannot find the orch binary/);

            // A binary that runs but fails: its own words are shown, once, and it is not retried.
            // Two ways: at once (the client may fail writing `initialize` before it has read the
            // process's stderr), and after reading `initialize` (the client sees the connection
            // close, again maybe before the stderr).
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), "orch-broken-"));
            const broken = [
                {
                    how: "fails at once",
                    words: "orch: the daemon for here runs orch 9.9.9, but this is orch 0.1.0",
                    script: "#!/bin/sh\necho 'orch: the daemon for here runs orch 9.9.9, but this is orch 0.1.0' >&2\nexit 1\n",
                },
                {
                    how: "fails after reading initialize",
                    words: "orch: cannot open the state directory /nonexistent/state: No such file or directory",
                    script: [
                        "#!/bin/sh",
                        "IFS= read -r header",
                        "n=${header#Content-Length: }",
                        "n=${n%?}",
                        "IFS= read -r blank",
                        'head -c "$n" >/dev/null',
                        "echo 'orch: cannot open the state directory /nonexistent/state: No such file or directory' >&2",
                        "exit 1",
                        "",
                    ].join("\n"),
                },
            ];
            for (const [i, b] of broken.entries()) {
                const bin = path.join(dir, String(i), "orch");
                fs.mkdirSync(path.dirname(bin));
                fs.writeFileSync(bin, b.script, { mode: 0o755 });
                const connects = ctx.connects;
                const errors = recordErrors();
                try {
                    await settings.update("path", bin, vscode.ConfigurationTarget.Workspace);
                    await waitFor(`the failure of a binary that ${b.how}`, () =>
                        ctx.state === "failed" && ctx.shown.find((s) => s.text.includes(b.words) && s.actions.includes("Open Settings")),
                    );
                    const said = `orch: \`${bin} lsp\` did not start: ${b.words}`;
                    assert.equal(ctx.failure, said);
                    assert.equal(a.status!.item.text, "orch: not connected");
                    // Nothing follows when its connection's close is handled (within 100 ms): no
                    // second message, no retry.
                    await new Promise((r) => setTimeout(r, 1000));
                    assert.equal(ctx.state, "failed", `still failed (${b.how})`);
                    assert.equal(ctx.connects, connects);
                    assert.equal(ctx.shown.filter((s) => s.text.includes(b.words)).length, 1, `said once (${b.how})`);
                    // Said once on screen too: the language client library's own notification
                    // ("couldn't create connection to server") is not shown beside it.
                    assert.deepEqual(errors.texts, [said], `the error notifications shown (${b.how})`);
                } finally {
                    errors.restore();
                }
            }
        } finally {
            await settings.update("path", undefined, vscode.ConfigurationTarget.Workspace);
        }
        await waitFor("the client to run again", () => ctx.state === "running", 60_000);
        assert.match(a.status!.item.text, /^orch: /);
    });
});
