// Agents in git worktrees, reviewed and landed from VS Code. The workspace tests/e2e/vscode.rs
// makes is a git repository on `main` with one commit (a.txt "one two", c.txt "gone"), and its
// orch.toml has an `editor` kind (appends to a.txt, creates b.txt, deletes c.txt, then sleeps) and
// a `rewriter` kind (rewrites a.txt). Runs after orch.test.ts, on the same daemon.

import * as assert from "node:assert/strict";
import * as cp from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

import type { Agent, Decision } from "../src/lsp_ext";
import type { Api } from "../src/main";
import type { FileItem } from "../src/review";
import { agentRows, api, call, ctxOf, waitFor, workspace } from "./helpers";

/** The scheme of the diff editor's read-only sides (src/review.ts). */
const BASE_SCHEME = "orch-base";

/** `git args...` in the workspace: its stdout, trimmed. */
function git(...args: string[]): string {
    return cp
        .execFileSync("git", ["-c", "user.name=test", "-c", "user.email=test@localhost", ...args], {
            cwd: workspace(),
            encoding: "utf8",
            timeout: 30_000,
        })
        .trim();
}

/** What the active editor tab shows, when it is a diff: its title and both sides' text. */
async function activeDiff(): Promise<{ label: string; left: vscode.Uri; right: vscode.Uri; leftText: string; rightText: string } | undefined> {
    const tab = vscode.window.tabGroups.activeTabGroup.activeTab;
    if (!tab || !(tab.input instanceof vscode.TabInputTextDiff)) {
        return undefined;
    }
    const { original, modified } = tab.input;
    // The texts the two editors of the diff show (both are visible).
    const visible = vscode.window.visibleTextEditors.map((e) => e.document.uri.toString());
    if (!visible.includes(original.toString()) || !visible.includes(modified.toString())) {
        return undefined;
    }
    const [l, r] = await Promise.all([vscode.workspace.openTextDocument(original), vscode.workspace.openTextDocument(modified)]);
    return { label: tab.label, left: original, right: modified, leftText: l.getText(), rightText: r.getText() };
}

/** Wait until the active tab is the diff titled `label`. */
function diffTitled(label: string): Promise<NonNullable<Awaited<ReturnType<typeof activeDiff>>>> {
    return waitFor(`the diff editor "${label}"`, async () => {
        const d = await activeDiff();
        return d?.label === label ? d : undefined;
    });
}

/** The agents view's item of `name`. */
function itemOf(a: Api, name: string): vscode.TreeItem | undefined {
    const agent = a.views!.agents.getChildren().find((x) => x.name === name);
    return agent && a.views!.agents.getTreeItem(agent);
}

describe("orch worktrees", () => {
    let a: Api;
    let w1: Agent;
    let wt: string;
    let start: string;
    let mainA: string;

    it("spawns an agent in a git worktree; the agents view shows its branch and how many files it changed", async () => {
        a = await api();
        const ctx = ctxOf(a);
        await waitFor("the client to run", () => ctx.state === "running", 60_000);
        start = git("rev-parse", "HEAD");
        assert.equal(git("branch", "--show-current"), "main");
        const agent = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", {
            kind: "editor",
            name: "w1",
            worktree: true,
        });
        assert.ok(agent?.worktree, `spawned in a worktree; shown: ${JSON.stringify(ctx.shown.slice(-2))}`);
        w1 = agent;
        wt = agent.worktree.path;
        assert.equal(agent.worktree.branch, "orch/w1");
        assert.equal(agent.worktree.base, "main");
        assert.ok(!wt.startsWith(workspace() + path.sep), `the worktree ${wt} is outside the repository`);
        assert.ok(ctx.shown.some((s) => s.text === "orch: spawned w1 (editor) on orch/w1"), JSON.stringify(ctx.shown.slice(-2)));
        // Once its turn ends (quiet: idle), the daemon counts its files: three.
        await waitFor("w1 with its branch and 3 changed files in the agents view", () =>
            agentRows(a).find((r) => /^w1: idle · editor · orch\/w1 \(3\) · \d+s$/.test(r)),
        );
        assert.equal(itemOf(a, "w1")?.contextValue, "agent.live.worktree", "the item offers the worktree commands");
        assert.match(String((itemOf(a, "w1")?.tooltip as vscode.MarkdownString).value), /worktree `orch\/w1` in .*: 3 files changed against `main`/);
        // The person's own checkout is untouched.
        assert.equal(fs.readFileSync(path.join(workspace(), "a.txt"), "utf8"), "one\ntwo\n");
        assert.equal(git("status", "--porcelain"), "");
    });

    it("reviews the changes: the file list, then each file in VS Code's diff editor, the base on the left, the worktree's file on the right", async () => {
        const review = a.review!;
        const result = await vscode.commands.executeCommand<{ files: unknown[] } | undefined>("orch.diff", w1);
        assert.equal(result?.files.length, 3);
        const pick = await waitFor("the file list", () => review.pick);
        assert.match(pick.title ?? "", /^orch: review w1: orch\/w1 against main at [0-9a-f]{12}$/);
        const rows = pick.items.map((i) => `${i.label} | ${i.description ?? ""}`);
        assert.deepEqual(rows, [
            "$(diff-modified) a.txt | modified · +1 -0",
            "$(diff-added) b.txt | added · +1 -0",
            "$(diff-removed) c.txt | deleted · +0 -1",
            " | ",
            "$(diff-multiple) All changes | 3 files, +2 -1",
        ]);
        const accept = async (label: string): Promise<void> => {
            const item = pick.items.find((i: FileItem) => i.label.endsWith(` ${label}`));
            assert.ok(item, label);
            pick.activeItems = [item];
            await waitFor(`${label} active in the list`, () => pick.activeItems[0] === item);
            await vscode.commands.executeCommand("workbench.action.acceptSelectedQuickOpenItem");
        };

        // Accepting a modified file: its base version (read-only) against the worktree's real file.
        await accept("a.txt");
        const modified = await diffTitled("a.txt (main ↔ orch/w1)");
        assert.equal(modified.left.scheme, BASE_SCHEME);
        assert.equal(modified.leftText, "one\ntwo\n");
        assert.equal(modified.right.scheme, "file");
        assert.equal(modified.right.fsPath, path.join(wt, "a.txt"));
        assert.equal(modified.rightText, "one\ntwo\nchanged\n");
        assert.ok(review.pick, "the list stays open for the next file");

        // An added file: nothing on the left. A deleted one: nothing on the right.
        await accept("b.txt");
        const added = await diffTitled("b.txt (main ↔ orch/w1)");
        assert.equal(added.leftText, "");
        assert.equal(added.right.fsPath, path.join(wt, "b.txt"));
        assert.equal(added.rightText, "new\n");
        await accept("c.txt");
        const deleted = await diffTitled("c.txt (main ↔ orch/w1)");
        assert.equal(deleted.leftText, "gone\n");
        assert.equal(deleted.right.scheme, BASE_SCHEME);
        assert.equal(deleted.rightText, "");

        // Every file at once, in VS Code's multi-diff editor.
        await accept("All changes");
        await waitFor("the multi-diff editor", () => {
            const tab = vscode.window.tabGroups.activeTabGroup.activeTab;
            // VS Code adds the count to the title.
            if (tab?.label !== "w1: orch/w1 against main (3 files)") {
                throw new Error(`the active tab is ${tab?.label} (${tab?.input?.constructor.name}); shown: ${JSON.stringify(a.ctx!.shown.slice(-2))}`);
            }
            return true;
        });
        await vscode.commands.executeCommand("workbench.action.closeQuickOpen");
        await waitFor("the list closed", () => review.pick === undefined);

        // A file named by the caller opens at once; the right side is the agent's real file:
        // an edit saved there is in its checkout.
        await vscode.commands.executeCommand("orch.diff", "w1", "a.txt");
        const again = await diffTitled("a.txt (main ↔ orch/w1)");
        const doc = await vscode.workspace.openTextDocument(again.right);
        const edit = new vscode.WorkspaceEdit();
        edit.insert(doc.uri, doc.positionAt(doc.getText().length), "reviewed\n");
        assert.ok(await vscode.workspace.applyEdit(edit));
        assert.ok(await doc.save());
        assert.equal(fs.readFileSync(path.join(wt, "a.txt"), "utf8"), "one\ntwo\nchanged\nreviewed\n");
        await vscode.commands.executeCommand("workbench.action.closeAllEditors");
    });

    it("squash-merges the worktree: one commit lands on main with the agent's work", async () => {
        const ctx = ctxOf(a);
        const stopped = await vscode.commands.executeCommand<Agent | undefined>("orch.stopAgent", w1);
        assert.equal(stopped?.state, "stopped");
        await waitFor("w1 stopped in the view, still with its worktree", () => itemOf(a, "w1")?.contextValue === "agent.ended.worktree");
        const landed = await vscode.commands.executeCommand<{ commit: string; files: string[] } | undefined>("orch.merge", w1, "squash");
        assert.ok(landed, `merged; shown: ${JSON.stringify(ctx.shown.slice(-2))}`);
        const log = git("log", "--format=%H", `${start}..main`).split("\n");
        assert.deepEqual(log, [landed.commit], "one commit on main: the squash");
        assert.equal(git("rev-parse", "HEAD"), landed.commit);
        assert.equal(git("rev-list", "--parents", "-n", "1", "HEAD").split(" ").length, 2, "not a merge commit");
        mainA = fs.readFileSync(path.join(workspace(), "a.txt"), "utf8");
        assert.equal(mainA, "one\ntwo\nchanged\nreviewed\n");
        assert.equal(fs.readFileSync(path.join(workspace(), "b.txt"), "utf8"), "new\n");
        assert.equal(fs.existsSync(path.join(workspace(), "c.txt")), false);
        assert.equal(git("status", "--porcelain"), "");
        assert.ok(
            ctx.shown.some((s) => s.text.startsWith(`orch: merged w1 (squash) into main: ${landed.commit.slice(0, 12)}, 3 files`)),
            JSON.stringify(ctx.shown.slice(-2)),
        );
        // The worktree stays until it is discarded (a squash leaves the branch's own history as it was).
        assert.ok(agentRows(a).find((r) => /^w1: stopped · editor · orch\/w1 \(3\) · /.test(r)), agentRows(a).join("\n"));
    });

    it("discards the merged worktree at once: the checkout and the branch are gone", async () => {
        const ctx = ctxOf(a);
        const done = await vscode.commands.executeCommand<boolean | undefined>("orch.discard", w1, { force: false });
        assert.equal(done, true, JSON.stringify(ctx.shown.slice(-2)));
        assert.equal(fs.existsSync(wt), false, "the worktree's directory is removed");
        assert.equal(git("branch", "--list", "orch/w1"), "");
        assert.equal(git("worktree", "list").split("\n").length, 1, git("worktree", "list"));
        await waitFor("w1 without a worktree in the view", () => itemOf(a, "w1")?.contextValue === "agent.ended");
        assert.ok(agentRows(a).find((r) => /^w1: stopped · editor · \d+s$/.test(r)), agentRows(a).join("\n"));
    });

    it("a merge that conflicts names the conflicting files and leaves main as it was", async () => {
        const ctx = ctxOf(a);
        const w2 = await vscode.commands.executeCommand<Agent | undefined>("orch.spawnAgent", { kind: "rewriter", name: "w2", worktree: true });
        assert.ok(w2?.worktree);
        await waitFor("w2 with 1 changed file", () => agentRows(a).find((r) => /^w2: idle · rewriter · orch\/w2 \(1\) · /.test(r)));
        // Meanwhile main moves on in the same file.
        fs.writeFileSync(path.join(workspace(), "a.txt"), "theirs\n");
        git("commit", "-q", "-am", "theirs");
        const head = git("rev-parse", "HEAD");
        const landed = await vscode.commands.executeCommand("orch.merge", w2, "merge");
        assert.equal(landed, undefined);
        const said = ctx.shown[ctx.shown.length - 1];
        assert.ok(said);
        assert.equal(said.level, "error");
        assert.match(said.text, /^orch: merge: .*conflict.*\. Files in conflict \(1\): a\.txt$/);
        assert.deepEqual(said.actions, ["Review Changes"]);
        assert.equal(git("rev-parse", "HEAD"), head, "main did not move");
        assert.equal(git("status", "--porcelain"), "", "the workspace is as it was");
        assert.equal(fs.readFileSync(path.join(workspace(), "a.txt"), "utf8"), "theirs\n");
    });

    it("pauses a worktree (branch kept, review from the branch) and resumes it", async () => {
        const ctx = ctxOf(a);
        const w2 = [...ctx.store.agents.values()].find((x) => x.name === "w2")!;
        const wt2 = w2.worktree!.path;
        await vscode.commands.executeCommand("orch.stopAgent", w2);
        const paused = await vscode.commands.executeCommand<Agent | undefined>("orch.pause", w2);
        assert.equal(paused?.worktree?.paused, true, JSON.stringify(ctx.shown.slice(-2)));
        assert.equal(fs.existsSync(wt2), false, "the checkout is removed");
        assert.equal(git("branch", "--list", "orch/w2"), "orch/w2", "the branch is kept");
        await waitFor("w2 paused in the view", () => agentRows(a).find((r) => /^w2: stopped · rewriter · orch\/w2 \(1, paused\) · /.test(r)));
        assert.equal(itemOf(a, "w2")?.contextValue, "agent.ended.paused");
        // While paused, the right side is the branch's version (read-only).
        await vscode.commands.executeCommand("orch.diff", w2, "a.txt");
        const d = await diffTitled("a.txt (main ↔ orch/w2)");
        assert.equal(d.leftText, mainA, "the left side is where the branch left main");
        assert.equal(d.right.scheme, BASE_SCHEME);
        assert.equal(d.rightText, "mine\n");
        await vscode.commands.executeCommand("workbench.action.closeAllEditors");

        const resumed = await vscode.commands.executeCommand<Agent | undefined>("orch.resume", w2);
        assert.equal(resumed?.worktree?.paused, false, JSON.stringify(ctx.shown.slice(-2)));
        await waitFor("the checkout back", () => fs.existsSync(path.join(wt2, "a.txt")));
        await waitFor("w2 running again in the view", () => itemOf(a, "w2")?.contextValue === "agent.live.worktree");
    });

    it("discarding unmerged work asks with a decision first; answering discard removes it", async () => {
        const ctx = ctxOf(a);
        const w2 = [...ctx.store.agents.values()].find((x) => x.name === "w2")!;
        const wt2 = w2.worktree!.path;
        await vscode.commands.executeCommand("orch.stopAgent", w2);
        await waitFor("w2 stopped", () => itemOf(a, "w2")?.contextValue === "agent.ended.worktree");
        const done = await vscode.commands.executeCommand<boolean | undefined>("orch.discard", w2, { force: false });
        assert.equal(done, false, "nothing removed yet");
        assert.ok(fs.existsSync(wt2));
        const warned = ctx.shown.find((s) => /^orch: discard: w2's branch orch\/w2 has work that was never merged; decision d-\d+ asks/.test(s.text));
        assert.ok(warned, JSON.stringify(ctx.shown.slice(-3)));
        assert.equal(warned.level, "warning");
        // The decision arrives like every decision: a notification with its options.
        const decision = await waitFor("the decision", () =>
            ctx.store.pendingDecisions().find((d: Decision) => d.title === "Discard w2's unmerged work on orch/w2?"),
        );
        await waitFor("the decision's notification", () =>
            ctx.shown.find((s) => s.text.startsWith("orch: Discard w2's unmerged work on orch/w2?") && s.actions.join(",") === "discard,keep"),
        );
        assert.equal(await vscode.commands.executeCommand<boolean>("orch.decide", decision.id, "discard"), true);
        await waitFor("the worktree removed once answered", () => !fs.existsSync(wt2) && git("branch", "--list", "orch/w2") === "");
        await waitFor("w2 without a worktree in the view", () => itemOf(a, "w2")?.contextValue === "agent.ended");
        // What the daemon says of it agrees.
        assert.equal(call<Agent>("orch/agent/get", { id: w2.id }).worktree, undefined);
    });
});
