// The orch protocol as typed requests and notifications, mirroring the `editor-protocol` crate
// (docs/protocol.md is the reference). Only this file knows method names and wire shapes; the
// rest of the extension calls `ctx.request(lsp_ext.agentSpawn, params)`.

import { NotificationType, RequestType } from "vscode-languageclient/node";

/** The protocol version this extension speaks (`capabilities.experimental.orch.protocolVersion`). */
export const PROTOCOL_VERSION = 1;

export type AgentState =
    | "starting"
    | "running"
    | "idle"
    | "busy"
    | "waiting"
    | "exited"
    | "failed"
    | "stopped"
    | "lost"
    | "exiting"
    | "unreachable";

/** States in which an agent's process runs. */
export const LIVE_STATES: ReadonlySet<string> = new Set(["starting", "running", "idle", "busy", "waiting", "exiting", "unreachable"]);

export interface Agent {
    id: string;
    name: string;
    kind: string;
    command: string[];
    cwd: string;
    sessionId: string;
    terminalId: string;
    backend: string;
    /** The remote host (`[hosts.<name>]`) whose tmux runs it; absent: the daemon's machine. */
    host?: string;
    state: AgentState;
    exitCode?: number;
    pid?: number;
    taskId?: string;
    restarts: number;
    /** Its own git worktree, when it was spawned in one (see `orch/agent/diff`). */
    worktree?: Worktree;
    createdAt: string;
    updatedAt: string;
}

/** `Agent.worktree`: where the agent's git worktree is checked out and what it holds. */
export interface Worktree {
    /** Its checkout (where it was, while paused). */
    path: string;
    branch: string;
    /** The branch (or commit) it came from and merges into. */
    base: string;
    /** Files changed against the base, as last counted (`worktree.changed`). */
    changes: number;
    /** The checkout was removed, the branch kept (`orch/agent/resume` brings it back). */
    paused: boolean;
}

export type TaskState =
    | "pending"
    | "assigned"
    | "running"
    | "verifying"
    | "done"
    | "failed"
    | "escalated"
    | "cancelled";

export type Priority = "low" | "normal" | "high" | "urgent";

export interface Gate {
    name: string;
    command: string[];
    timeoutS: number;
}

export interface GateResult {
    name: string;
    attempt: number;
    ok: boolean;
    exitCode: number | null;
    durationMs: number;
    outputTail: string;
}

export interface Task {
    id: string;
    title: string;
    prompt: string;
    priority: Priority;
    agentId?: string;
    state: TaskState;
    attempts: number;
    maxAttempts: number;
    gates: Gate[];
    gateResults: GateResult[];
    decisionId?: string;
    summary?: string;
    createdAt: string;
    updatedAt: string;
}

export interface Decision {
    id: string;
    title: string;
    detail: string;
    options: string[];
    state: "pending" | "resolved";
    choice?: string;
    reason?: string;
    source: { kind: "agent" | "task" | "user"; id?: string };
    createdAt: string;
    resolvedAt?: string;
}

export interface OrchEvent {
    seq: number;
    time: string;
    kind: string;
    subject: string;
    // Each kind has its own shape (docs/protocol.md, Events); readers check what they use.
    data: Record<string, unknown> | null;
}

export interface Screen {
    lines: string[];
    cursor: { row: number; col: number };
    cols: number;
    rows: number;
    title?: string;
    ansi?: string;
}

export interface Status {
    workspace: string;
    version: string;
    pid: number;
    uptimeMs: number;
    protocolVersion: number;
    agents: { total: number; byState: Record<string, number> };
    clients: number;
    lastSeq: number;
    backends: { name: string; available: boolean; detail: string }[];
    store: { path: string; sizeBytes: number };
}

export interface Page<T> {
    items: T[];
    nextCursor?: string;
}

export interface ListParams {
    limit?: number;
    cursor?: string;
}

/** `capabilities.experimental.orch` of the `initialize` result. */
export interface ServerOrchCapabilities {
    protocolVersion?: number;
    backends?: string[];
    workspace?: string;
}

/** What `orch/config/get` returns, as far as the extension reads it (keys are snake_case). */
export interface Config {
    path: string | null;
    agents: Record<string, { command: string[]; waiting_patterns?: string[]; worktree?: boolean }>;
}

export type Empty = Record<string, never>;

export const status = new RequestType<Empty, Status, void>("orch/status");

export interface SpawnParams {
    kind?: string;
    command?: string[];
    name?: string;
    cwd?: string;
    env?: Record<string, string>;
    backend?: string;
    sessionId?: string;
    cols?: number;
    rows?: number;
    /** Run it in a git worktree of its own (branch `orch/<name>` off the current branch). */
    worktree?: boolean | { branch?: string; base?: string };
}
export const agentSpawn = new RequestType<SpawnParams, Agent, void>("orch/agent/spawn");
export const agentList = new RequestType<ListParams & { state?: string; sessionId?: string }, Page<Agent>, void>(
    "orch/agent/list",
);
export const agentGet = new RequestType<{ id: string }, Agent, void>("orch/agent/get");
export const agentSend = new RequestType<{ id: string; text: string; submit?: boolean }, Empty, void>("orch/agent/send");
export const agentStop = new RequestType<{ id: string; force?: boolean }, Agent, void>("orch/agent/stop");
export const agentRestart = new RequestType<{ id: string }, Agent, void>("orch/agent/restart");

/** One file of `orch/agent/diff`, relative to the worktree's top. */
export interface ChangedFile {
    path: string;
    status: "added" | "modified" | "deleted" | "renamed";
    oldPath?: string;
    additions: number;
    deletions: number;
    binary?: boolean;
}

export interface DiffResult {
    /** The base compared against, as named. */
    base: string;
    /** The commit where the base and the branch meet: the left side of every file. */
    mergeBase: string;
    branch: string;
    /** The worktree (absent while paused). */
    path?: string;
    files: ChangedFile[];
    diff: string;
    truncated: boolean;
}
export const agentDiff = new RequestType<{ id: string; base?: string }, DiffResult, void>("orch/agent/diff");

export type MergeStrategy = "merge" | "squash" | "rebase";
export const agentMerge = new RequestType<
    { id: string; strategy?: MergeStrategy; message?: string },
    { commit: string; files: string[] },
    void
>("orch/agent/merge");
export const agentDiscard = new RequestType<{ id: string; force?: boolean }, Empty, void>("orch/agent/discard");
export const agentPause = new RequestType<{ id: string }, Agent, void>("orch/agent/pause");
export const agentResume = new RequestType<{ id: string }, Agent, void>("orch/agent/resume");

export const agentScreen = new RequestType<{ id: string; scrollback?: number }, Screen, void>("orch/agent/screen");

export const terminalWrite = new RequestType<{ id: string; data: string }, Empty, void>("orch/terminal/write");
export const terminalResize = new RequestType<{ id: string; cols: number; rows: number }, Empty, void>(
    "orch/terminal/resize",
);
export const terminalScreen = new RequestType<{ id: string; scrollback?: number }, Screen, void>(
    "orch/terminal/screen",
);
export const terminalSubscribe = new RequestType<{ id: string }, Empty, void>("orch/terminal/subscribe");
export const terminalUnsubscribe = new RequestType<{ id: string }, Empty, void>("orch/terminal/unsubscribe");

export interface TaskCreateParams {
    title: string;
    prompt: string;
    priority?: Priority;
    agentId?: string;
    gates?: (string | { name: string; command: string[]; timeoutS?: number })[];
    maxAttempts?: number;
}
export const taskCreate = new RequestType<TaskCreateParams, Task, void>("orch/task/create");
export const taskList = new RequestType<ListParams & { state?: string; agentId?: string }, Page<Task>, void>(
    "orch/task/list",
);
export const taskGet = new RequestType<{ id: string }, Task, void>("orch/task/get");

export const decisionList = new RequestType<ListParams & { state?: "pending" | "resolved" }, Page<Decision>, void>(
    "orch/decision/list",
);
export const decisionResolve = new RequestType<{ id: string; choice: string; reason?: string }, Decision, void>(
    "orch/decision/resolve",
);

export interface SubscribeParams {
    kinds?: string[];
    subjects?: string[];
    since?: number;
}
export const eventsSubscribe = new RequestType<SubscribeParams, { subscriptionId: string; lastSeq: number }, void>(
    "orch/events/subscribe",
);

export const configGet = new RequestType<Empty, Config, void>("orch/config/get");

export const event = new NotificationType<{ subscriptionId: string; event: OrchEvent }>("orch/event");
export const terminalOutput = new NotificationType<{ id: string; data?: string; resync?: boolean }>(
    "orch/terminal/output",
);

/** Error codes of the daemon (editor_protocol::errors). */
export const errors = {
    notFound: -32001,
    conflict: -32003,
    backendUnavailable: -32004,
    limitExceeded: -32005,
} as const;
