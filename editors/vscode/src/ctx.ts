// The context owns the language client running `<orch.path> lsp` for the workspace folder and
// everything whose life is tied to the connection: the event subscription (replayed from the
// last seq after every reconnect, applied at most once per seq), the cache of agents, tasks and
// decisions the views show, decision prompts, and the routing of terminal output to attached
// views. It knows nothing about trees, terminals or commands beyond the listeners they register.

import * as cp from "node:child_process";
import * as vscode from "vscode";
import {
    CloseAction,
    ErrorAction,
    ErrorCodes,
    LanguageClient,
    LogMessageNotification,
    MessageActionItem,
    MessageType,
    ResponseError,
    ShowMessageRequest,
    ShowMessageRequestParams,
    State as ClientState,
    StaticFeature,
    WorkDoneProgressBegin,
    WorkDoneProgressEnd,
    WorkDoneProgressReport,
    type ClientCapabilities,
    type RequestType,
} from "vscode-languageclient/node";

import { Config, resolveExecutable } from "./config";
import * as lsp_ext from "./lsp_ext";

/** Where the connection is. */
export type ConnState =
    | "stopped"
    | "starting"
    | "running"
    | "reconnecting"
    // The daemon was stopped on purpose (`orch stop`): the next command starts it again.
    | "down"
    | "failed";

/** A message the extension showed (kept for `Orch: Show Status` and for tests). */
export interface Shown {
    level: "error" | "warning" | "info";
    text: string;
    actions: string[];
}

/** Something an attached terminal view wants from the connection. */
export interface TerminalSink {
    /** `orch/terminal/output` for the terminal it follows. */
    output(params: { id: string; data?: string; resync?: boolean }): void;
    /** The connection is up again (after a reconnect): subscribe and repaint. */
    reconnected(): void;
    /** An agent record changed (a restart gives it a new terminal; an exit ends the view). */
    agentChanged(agent: lsp_ext.Agent): void;
}

/** How many events the Events channel shows from before the first connection. */
const HISTORY = 100;
/** Restarts of a connection that keeps dying allowed within `RESTART_WINDOW_MS`. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 3 * 60 * 1000;
/** Error code of an answer the extension gives itself when the client is not running. */
const NOT_CONNECTED = -32099;

/** The cache of the daemon's objects, fed by list results and `orch/event`. */
export class Store {
    readonly agents = new Map<string, lsp_ext.Agent>();
    readonly tasks = new Map<string, lsp_ext.Task>();
    readonly decisions = new Map<string, lsp_ext.Decision>();
    /** Why each agent is in its state (the `evidence` of its last `agent.state`). */
    readonly evidence = new Map<string, string>();
    /** The seq of the last event applied; undefined before the first subscription. */
    lastSeq: number | undefined;
    /** Events up to this seq were history at the first connection: logged, never announced. */
    liveFrom = 0;
    /** Seqs of the events applied, in order (bounded): what tests check for gaps and repeats. */
    readonly applied: number[] = [];
    /** Events received again and dropped (a replay overlapping what was applied). */
    duplicates = 0;
    /** Holes in the sequence (none with a correct daemon). */
    readonly gaps: { after: number; got: number }[] = [];

    pendingDecisions(): lsp_ext.Decision[] {
        return [...this.decisions.values()].filter((d) => d.state === "pending");
    }
}

export class Ctx implements vscode.Disposable {
    readonly store = new Store();
    /** `Orch: Show Events`: every event applied, daemon log messages, connection changes. */
    readonly events: vscode.OutputChannel;
    /** The language client's own log (stderr of `orch lsp`, protocol errors). */
    readonly log: vscode.LogOutputChannel;
    /** Every message shown to the person, oldest first (bounded). */
    readonly shown: Shown[] = [];
    /** `$/progress` values received, oldest first (bounded). */
    readonly progress: { token: string; kind: string; title?: string | undefined; message?: string | undefined }[] = [];
    /** Attached terminal views by terminal id. */
    readonly terminals = new Map<string, TerminalSink>();
    /** Successful connections so far (1 after the first; more after reconnects). */
    connects = 0;
    /** The daemon's pid on the current connection (from `orch/status`). */
    daemonPid: number | undefined;
    /** The workspace root the daemon serves (`capabilities.experimental.orch.workspace`). */
    serverWorkspace: string | undefined;

    private client: LanguageClient | undefined;
    private connState: ConnState = "stopped";
    private readonly changed = new vscode.EventEmitter<void>();
    /** Fires (at most once per tick) when the store or the connection changed. */
    readonly onDidChange = this.changed.event;
    private changePending = false;
    private readonly disposables: vscode.Disposable[] = [];
    private restarts: number[] = [];
    /** Why the connection failed, when it did. */
    failure: string | undefined;
    /** Resolves when the current start attempt ends (running or failed). */
    private starting: Promise<void> | undefined;
    /** Decision prompts on screen, by decision id (else message): one toast per decision. */
    private readonly prompts = new Map<string, Promise<MessageActionItem | null>>();
    /** Agents and tasks whose record is being fetched after an event. */
    private readonly fetching = new Set<string>();
    private readonly warned = new Set<string>();
    /** The daemon announced its stop (`daemon.stopping`): its connection's end is no crash. */
    private daemonStopping = false;

    constructor(
        readonly config: Config,
        readonly folder: vscode.WorkspaceFolder,
    ) {
        this.events = vscode.window.createOutputChannel("orch events");
        this.log = vscode.window.createOutputChannel("orch", { log: true });
        this.disposables.push(
            this.events,
            this.log,
            this.changed,
            config.onDidChange(() => {
                this.log.info(`orch.path is now ${config.path}: restarting the client`);
                void this.restart();
            }),
        );
    }

    get state(): ConnState {
        return this.connState;
    }

    get root(): string {
        return this.folder.uri.fsPath;
    }

    /** Start the client unless it runs. Resolves when it runs or failed (never rejects). */
    start(): Promise<void> {
        if (this.client && (this.connState === "running" || this.connState === "reconnecting")) {
            return Promise.resolve();
        }
        if (!this.starting) {
            const starting: Promise<void> = this.doStart().finally(() => {
                if (this.starting === starting) {
                    this.starting = undefined;
                }
            });
            this.starting = starting;
        }
        return this.starting;
    }

    async restart(): Promise<void> {
        await this.stop();
        await this.start();
    }

    /** Stop the client. The daemon and its agents keep running. */
    async stop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        // An attempt in progress ends quietly (it sees it is no longer the client); the next
        // start() is a new one, with the settings of now.
        this.starting = undefined;
        this.setState("stopped");
        if (client) {
            try {
                await client.stop(2000);
            } catch {
                // Already stopped or never started: nothing to undo.
            }
            await client.dispose().catch(() => undefined);
        }
    }

    private async doStart(): Promise<void> {
        this.failure = undefined;
        this.setState("starting");
        const env = { ...process.env, ORCH_WORKSPACE: this.root };
        const exe = resolveExecutable(this.config.path, this.root, env);
        if (!exe) {
            this.fail(
                `orch: cannot find the orch binary \`${this.config.path}\` (setting orch.path): install orch or set orch.path to its path`,
            );
            return;
        }
        // This client's connections: whether one was up yet, and its latest `orch lsp` process.
        const conn: { ran: boolean; proc: LspProcess | undefined } = { ran: false, proc: undefined };
        const client: LanguageClient = new OrchClient(
            "orch",
            "orch",
            async () => {
                const child = cp.spawn(exe, ["lsp"], { cwd: this.root, env });
                const proc = new LspProcess(child);
                conn.proc = proc;
                this.watchForStop(child);
                child.stderr.setEncoding("utf8");
                child.stderr.on("data", (chunk: string) => {
                    this.log.info(`orch lsp: ${chunk.trimEnd()}`);
                    proc.stderr = (proc.stderr + chunk).slice(-2000);
                });
                return child;
            },
            {
                // orch serves no documents: no text synchronization, no language features.
                documentSelector: [],
                workspaceFolder: this.folder,
                outputChannel: this.log,
                initializationFailedHandler: () => false,
                middleware: {
                    // Task progress shows as VS Code window progress (the library's own); it is
                    // also logged, and kept for `Orch: Show Events` and tests.
                    handleWorkDoneProgress: (token, params, next) => {
                        this.onProgress(String(token), params);
                        next(token, params);
                    },
                },
                errorHandler: {
                    error: () => ({ action: ErrorAction.Continue, handled: true }),
                    closed: () => this.onClosed(client, exe, conn),
                },
            },
        );
        client.registerFeature(new OrchCapabilities());
        this.registerHandlers(client);
        client.onDidChangeState((e) => {
            if (this.client !== client) {
                return;
            }
            if (e.newState === ClientState.Running) {
                conn.ran = true;
                void this.onRunning(client);
            } else if (e.newState === ClientState.Starting && conn.ran) {
                // The library restarting a connection that was up (see onClosed). A new client's
                // first start stays "starting", even after earlier clients connected.
                this.setState("reconnecting");
            }
        });
        this.client = client;
        try {
            await client.start();
        } catch (e) {
            if (this.client !== client) {
                // Stopped (or restarted with other settings) meanwhile: nothing to report.
                return;
            }
            // `orch lsp` ended (or never ran) before answering `initialize`. The library often
            // sees that first, as a failed write of `initialize` (EPIPE) or a closed connection,
            // before the process's stderr has been read: its words come once it has ended.
            const why = (await conn.proc?.why()) || errorMessage(e);
            if (this.client !== client) {
                return;
            }
            this.client = undefined;
            // The only report of this failure: onClosed leaves a connection that never ran to us.
            this.fail(`orch: \`${exe} lsp\` did not start: ${why}`);
            await client.dispose().catch(() => undefined);
            return;
        }
        // onRunning (from the state change) finishes the connection; wait for it here so that
        // start() resolves with the subscription in place.
        await this.whenSettled();
    }

    /** Resolves once the connection is running (subscribed) or failed. */
    private whenSettled(): Promise<void> {
        return new Promise((resolve) => {
            const check = (): boolean => {
                if (["running", "failed", "stopped", "down"].includes(this.connState)) {
                    resolve();
                    return true;
                }
                return false;
            };
            if (check()) {
                return;
            }
            const sub = this.onDidChange(() => {
                if (check()) {
                    sub.dispose();
                }
            });
        });
    }

    /**
     * A connection of `client` closed: restart it (`orch lsp` starts a daemon if none runs) unless
     * the daemon was stopped on purpose or the connection keeps dying. A client that is no longer
     * ours (stopped, replaced, failed) is never restarted, and nothing is said about it.
     */
    private async onClosed(
        client: LanguageClient,
        exe: string,
        conn: { ran: boolean; proc: LspProcess | undefined },
    ): Promise<{ action: CloseAction; handled: boolean; message?: string }> {
        const stay = { action: CloseAction.DoNotRestart, handled: true };
        if (this.client !== client || !["starting", "running", "reconnecting"].includes(this.connState)) {
            return stay;
        }
        if (!conn.ran) {
            // Ended before answering `initialize`: client.start() rejects, and doStart says why.
            return stay;
        }
        // The close is reported before the messages read just ahead of it are dispatched; let
        // them land first: the last one may be the daemon's `daemon.stopping`.
        await new Promise((r) => setTimeout(r, 100));
        if (this.client !== client) {
            return stay;
        }
        const now = Date.now();
        this.restarts = this.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
        this.restarts.push(now);
        if (this.connState === "starting") {
            // `orch lsp` ended after `initialize`, before the first connection was up (status,
            // subscription): retrying will not help.
            const why = (await conn.proc?.why()) || "it exited";
            if (this.client !== client) {
                return stay;
            }
            this.client = undefined;
            setTimeout(() => void client.dispose().catch(() => undefined), 0);
            this.fail(`orch: \`${exe} lsp\` ended while connecting: ${why}`);
            return stay;
        }
        if (this.daemonStopping) {
            // Someone stopped the daemon (`orch stop`): starting it again now would undo that.
            this.daemonStopping = false;
            this.client = undefined;
            setTimeout(() => void client.dispose().catch(() => undefined), 0);
            this.events.appendLine(`${stamp()} the daemon was stopped; the next orch command starts it again`);
            this.setState("down");
            return stay;
        }
        this.events.appendLine(`${stamp()} connection to the daemon lost; reconnecting`);
        if (this.restarts.length > MAX_RESTARTS) {
            const why = await conn.proc?.why();
            if (this.client !== client) {
                return stay;
            }
            this.client = undefined;
            setTimeout(() => void client.dispose().catch(() => undefined), 0);
            const msg = `orch: the connection to the daemon closed ${MAX_RESTARTS + 1} times in 3 minutes; not reconnecting${why ? `: ${why}` : ""}`;
            this.fail(msg);
            return stay;
        }
        this.setState("reconnecting");
        return { action: CloseAction.Restart, handled: true };
    }

    /**
     * Notice `daemon.stopping` in the raw stream of `orch lsp`. The client library reports a
     * closed connection before it dispatches the messages read just ahead of the close, and
     * drops them, so the event itself may never reach `apply` on the connection it ends.
     */
    private watchForStop(child: cp.ChildProcessWithoutNullStreams): void {
        let tail = "";
        child.stdout.on("data", (chunk: Buffer) => {
            const text = tail + chunk.toString("latin1");
            if (text.includes('"kind":"daemon.stopping"')) {
                this.daemonStopping = true;
            }
            tail = text.slice(-64);
        });
    }

    /** Every (re)connection: check the protocol, subscribe from the last seq, reload the lists. */
    private async onRunning(client: LanguageClient): Promise<void> {
        const orch = (client.initializeResult?.capabilities.experimental as { orch?: lsp_ext.ServerOrchCapabilities })
            ?.orch;
        if (orch?.protocolVersion !== lsp_ext.PROTOCOL_VERSION) {
            const got = orch?.protocolVersion === undefined ? "none" : String(orch.protocolVersion);
            this.client = undefined;
            await client.stop().catch(() => undefined);
            this.fail(
                `orch: \`${this.config.path}\` speaks orch protocol version ${got}, this extension needs ${lsp_ext.PROTOCOL_VERSION}: install a matching orch or set orch.path`,
            );
            return;
        }
        this.serverWorkspace = orch.workspace;
        const again = this.connects > 0;
        try {
            const status = await client.sendRequest(lsp_ext.status, {});
            this.daemonPid = status.pid;
            await this.subscribe(client, status);
            // A replay may hold an earlier daemon's `daemon.stopping`: that one is history.
            this.daemonStopping = false;
            await this.reload(client);
        } catch (e) {
            if (this.client !== client || connectionGone(e)) {
                // Stopped, or the connection closed meanwhile: onClosed reconnects or says why.
                return;
            }
            // A connection without the events would show a stale picture: say so, and stop
            // (whoever waits for this connection is released by the failed state).
            this.client = undefined;
            await client.stop().catch(() => undefined);
            this.fail(`orch: could not follow the daemon's events: ${errorMessage(e)}`);
            return;
        }
        if (this.client !== client) {
            return;
        }
        this.connects += 1;
        this.restarts = [];
        this.events.appendLine(
            `${stamp()} ${again ? "reconnected to" : "connected to"} the daemon of ${orch.workspace ?? this.root} (pid ${this.daemonPid}), events from seq ${this.store.lastSeq}`,
        );
        this.setState("running");
        if (again) {
            for (const t of this.terminals.values()) {
                t.reconnected();
            }
        }
    }

    /**
     * Subscribe to every event after the last one applied. The replay arrives before the
     * response; `apply` drops what was seen already, so a replay that overlaps is harmless.
     */
    private async subscribe(client: LanguageClient, status: lsp_ext.Status): Promise<void> {
        const store = this.store;
        let since: number | undefined;
        if (store.lastSeq === undefined) {
            // First connection: recent history for the Events channel, announced as history.
            store.liveFrom = status.lastSeq;
            since = Math.max(0, status.lastSeq - HISTORY);
        } else {
            since = store.lastSeq;
        }
        try {
            const res = await client.sendRequest(lsp_ext.eventsSubscribe, { since });
            if (store.lastSeq === undefined) {
                // Nothing to replay: we are at the daemon's last event.
                store.lastSeq = res.lastSeq;
            } else if (store.lastSeq > res.lastSeq) {
                // Not the log we followed (its state directory was replaced): follow this one.
                this.events.appendLine(
                    `${stamp()} the daemon's log ends at seq ${res.lastSeq}, before ours (${store.lastSeq}): following the new log`,
                );
                store.lastSeq = res.lastSeq;
            }
        } catch (e) {
            if (!(e instanceof ResponseError && e.code === lsp_ext.errors.conflict)) {
                throw e;
            }
            // Retention dropped events after `since`: the lists below are the truth now.
            this.events.appendLine(`${stamp()} events after seq ${since} are no longer kept (${e.message}); reloading`);
            const res = await client.sendRequest(lsp_ext.eventsSubscribe, {});
            store.lastSeq = res.lastSeq;
        }
    }

    /** Reload the lists from the daemon (the views' Refresh). */
    async refresh(): Promise<void> {
        await this.start();
        if (this.client && this.connState === "running") {
            await this.reload(this.client);
        }
    }

    /** Replace the cached agents, tasks and pending decisions with the daemon's lists. */
    private async reload(client: LanguageClient): Promise<void> {
        const [agents, tasks, decisions] = await Promise.all([
            allPages((p) => client.sendRequest(lsp_ext.agentList, p)),
            allPages((p) => client.sendRequest(lsp_ext.taskList, p)),
            allPages((p) => client.sendRequest(lsp_ext.decisionList, { ...p, state: "pending" })),
        ]);
        const s = this.store;
        s.agents.clear();
        for (const a of agents) {
            s.agents.set(a.id, a);
        }
        s.tasks.clear();
        for (const t of tasks) {
            s.tasks.set(t.id, t);
        }
        for (const [id, d] of s.decisions) {
            if (d.state === "pending") {
                s.decisions.delete(id);
            }
        }
        for (const d of decisions) {
            s.decisions.set(d.id, d);
        }
        this.fireChanged();
    }

    private registerHandlers(client: LanguageClient): void {
        client.onNotification(lsp_ext.event, (p) => this.apply(p.event));
        client.onNotification(lsp_ext.terminalOutput, (p) => this.terminals.get(p.id)?.output(p));
        client.onNotification(LogMessageNotification.type, (p) => this.onLogMessage(p.type, p.message));
        client.onRequest(ShowMessageRequest.type, (p) => this.onDecisionRequest(p));
    }

    /** Apply one event at most once, in seq order, to the store; log it. */
    apply(ev: lsp_ext.OrchEvent): void {
        const s = this.store;
        if (s.lastSeq !== undefined && ev.seq <= s.lastSeq) {
            s.duplicates += 1;
            return;
        }
        if (s.lastSeq !== undefined && ev.seq !== s.lastSeq + 1) {
            s.gaps.push({ after: s.lastSeq, got: ev.seq });
            this.events.appendLine(`${stamp()} missing events ${s.lastSeq + 1}..${ev.seq - 1}`);
        }
        s.lastSeq = ev.seq;
        s.applied.push(ev.seq);
        if (s.applied.length > 10000) {
            s.applied.splice(0, s.applied.length - 10000);
        }
        this.events.appendLine(describeEvent(ev));
        if (ev.kind === "daemon.stopping") {
            this.daemonStopping = true;
        }
        const data = (ev.data ?? {}) as Record<string, unknown>;
        const [noun] = ev.kind.split(".");
        if (noun === "agent") {
            this.applyAgent(ev, data);
        } else if (noun === "worktree") {
            this.applyWorktree(ev, data);
        } else if (noun === "task") {
            const task = data.task as lsp_ext.Task | undefined;
            if (ev.kind === "task.created" && task) {
                // The record as created. A record known already is newer: the daemon may answer
                // `orch/task/create` (assigned, attempt started) before it sends this event.
                if (!s.tasks.has(task.id)) {
                    s.tasks.set(task.id, task);
                }
            } else {
                const t = s.tasks.get(ev.subject);
                if (t && ev.kind === "task.state" && typeof data.state === "string") {
                    t.state = data.state as lsp_ext.TaskState;
                }
                if (t && ev.kind === "task.assigned") {
                    t.agentId = typeof data.agentId === "string" ? data.agentId : undefined;
                }
                if (t && ev.kind === "task.attempt" && typeof data.attempt === "number") {
                    t.attempts = data.attempt;
                }
                if (t && ev.kind === "task.gate" && data.result) {
                    t.gateResults = [...t.gateResults, data.result as lsp_ext.GateResult];
                }
                // The record has more than the event says (attempts, agent, decision).
                this.fetch(ev.subject, (c) => c.sendRequest(lsp_ext.taskGet, { id: ev.subject }), (t) =>
                    s.tasks.set(t.id, t),
                );
            }
        } else if (ev.kind === "decision.requested") {
            const d = data.decision as lsp_ext.Decision | undefined;
            if (d) {
                s.decisions.set(d.id, d);
            }
        } else if (ev.kind === "decision.resolved") {
            const d = s.decisions.get(ev.subject);
            if (d) {
                d.state = "resolved";
                d.choice = typeof data.choice === "string" ? data.choice : d.choice;
                d.reason = typeof data.reason === "string" ? data.reason : d.reason;
                d.resolvedAt = typeof data.at === "string" ? data.at : ev.time;
            }
        }
        this.fireChanged();
    }

    private applyAgent(ev: lsp_ext.OrchEvent, data: Record<string, unknown>): void {
        const s = this.store;
        const known = s.agents.get(ev.subject);
        if (ev.kind === "agent.spawned" && data.agent && !known) {
            // The record as spawned; one known already (the spawn's answer) is newer.
            s.agents.set(ev.subject, data.agent as lsp_ext.Agent);
        } else if (known && ev.kind === "agent.state" && typeof data.state === "string") {
            known.state = data.state as lsp_ext.AgentState;
            known.updatedAt = ev.time;
            if (typeof data.exitCode === "number") {
                known.exitCode = data.exitCode;
            }
        } else if (known && ev.kind === "agent.restarted" && typeof data.terminalId === "string") {
            known.terminalId = data.terminalId;
            known.restarts = typeof data.restarts === "number" ? data.restarts : known.restarts;
        }
        if (ev.kind === "agent.state" && typeof data.evidence === "string") {
            s.evidence.set(ev.subject, data.evidence);
        }
        const agent = s.agents.get(ev.subject);
        if (agent) {
            for (const t of this.terminals.values()) {
                t.agentChanged(agent);
            }
        }
        if (!known || ev.kind === "agent.spawned" || ev.kind === "agent.restarted" || ev.kind === "agent.adopted") {
            // The event carries part of the record: fetch the whole Agent (pid, task, terminal).
            this.fetch(ev.subject, (c) => c.sendRequest(lsp_ext.agentGet, { id: ev.subject }), (a) => {
                s.agents.set(a.id, a);
                for (const t of this.terminals.values()) {
                    t.agentChanged(a);
                }
            });
        }
    }

    /**
     * `worktree.*` (the subject is the agent): what the event says goes into the agent's record at
     * once (its change count, paused, gone), then the whole record is fetched.
     */
    private applyWorktree(ev: lsp_ext.OrchEvent, data: Record<string, unknown>): void {
        const known = this.store.agents.get(ev.subject);
        if (known) {
            const w = known.worktree;
            if (ev.kind === "worktree.created" && typeof data.path === "string" && typeof data.branch === "string") {
                known.worktree = {
                    path: data.path,
                    branch: data.branch,
                    base: typeof data.base === "string" ? data.base : (w?.base ?? ""),
                    changes: w?.changes ?? 0,
                    paused: false,
                };
            } else if (ev.kind === "worktree.changed" && w && typeof data.files === "number") {
                w.changes = data.files;
            } else if (ev.kind === "worktree.removed" && w) {
                if (data.branchKept === true) {
                    w.paused = true;
                } else {
                    delete known.worktree;
                }
            }
        }
        this.fetch(ev.subject, (c) => c.sendRequest(lsp_ext.agentGet, { id: ev.subject }), (a) => this.store.agents.set(a.id, a));
    }

    /** Fetch one record after an event, at most one fetch per id at a time. */
    private fetch<T>(id: string, get: (c: LanguageClient) => Promise<T>, put: (v: T) => void): void {
        const client = this.client;
        if (!client || this.fetching.has(id)) {
            return;
        }
        this.fetching.add(id);
        // Let the events of one batch land first: one fetch then sees all of them.
        setTimeout(() => {
            get(client)
                .then((v) => {
                    put(v);
                    this.fireChanged();
                })
                .catch(() => undefined)
                .finally(() => this.fetching.delete(id));
        }, 20);
    }

    private onProgress(token: string, value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
        const title = value.kind === "begin" ? `${value.title}: ` : "";
        this.progress.push({ token, kind: value.kind, title: value.kind === "begin" ? value.title : undefined, message: value.message });
        if (this.progress.length > 500) {
            this.progress.splice(0, this.progress.length - 500);
        }
        this.events.appendLine(`${stamp()} progress ${token} ${value.kind}: ${title}${value.message ?? ""}`);
    }

    /** `window/logMessage`: logged; errors and warnings shown (each distinct warning once). */
    private onLogMessage(type: MessageType, message: string): void {
        this.events.appendLine(`${stamp()} daemon: ${message}`);
        if (type === MessageType.Error) {
            this.showError(`orch: ${message}`);
        } else if (type === MessageType.Warning && !this.warned.has(message)) {
            this.warned.add(message);
            this.show("warning", message.startsWith("orch") ? message : `orch: ${message}`, []);
        }
    }

    /**
     * `window/showMessageRequest`: a pending decision, shown as a notification with one button
     * per option. One notification per decision, also when a reconnected connection offers it
     * again. The answer goes through `orch/decision/resolve` so that a late one (another client
     * answered first) is refused by the daemon, and the person is told so.
     */
    private async onDecisionRequest(params: ShowMessageRequestParams): Promise<MessageActionItem | null> {
        const decision = await this.decisionFor(params.message);
        const key = decision?.id ?? params.message;
        let prompt = this.prompts.get(key);
        if (!prompt) {
            prompt = this.promptDecision(params, decision).finally(() => this.prompts.delete(key));
            this.prompts.set(key, prompt);
        }
        return prompt;
    }

    private async promptDecision(
        params: ShowMessageRequestParams,
        decision: lsp_ext.Decision | undefined,
    ): Promise<MessageActionItem | null> {
        const actions = params.actions ?? [];
        const title = params.message.split("\n")[0] ?? params.message;
        const detail = params.message.slice(title.length).trim().split("\n").slice(-3).join(" / ");
        const text = detail ? `orch: ${title}: ${detail}` : `orch: ${title}`;
        const choice = await this.show("warning", text, actions.map((a) => a.title));
        if (choice === undefined) {
            // Dismissed: the decision stays pending, in the Decisions view.
            return null;
        }
        if (!decision) {
            return actions.find((a) => a.title === choice) ?? null;
        }
        const won = await this.answer(decision, choice);
        return won ? { title: choice } : null;
    }

    /**
     * Resolve `decision` with `choice`. Returns whether this answer counted; a late one (the
     * decision was answered elsewhere first) is reported to the person with the daemon's words.
     */
    async answer(decision: lsp_ext.Decision, choice: string): Promise<boolean> {
        try {
            const d = await this.request(lsp_ext.decisionResolve, {
                id: decision.id,
                choice,
                reason: "answered in VS Code",
            });
            this.store.decisions.set(d.id, d);
            this.fireChanged();
            return true;
        } catch (e) {
            if (e instanceof ResponseError && e.code === lsp_ext.errors.conflict) {
                const known = this.store.decisions.get(decision.id);
                const by = known?.choice ? ` (their answer: ${known.choice})` : "";
                this.show(
                    "warning",
                    `orch: "${decision.title}" was already answered by another client${by}; your answer "${choice}" was not used (${e.message})`,
                    [],
                );
            } else {
                this.showError(`orch: ${errorMessage(e)}`);
            }
            return false;
        }
    }

    /** The decision a prompt's message is about: its title is the message's first line. */
    private async decisionFor(message: string): Promise<lsp_ext.Decision | undefined> {
        const title = message.split("\n")[0];
        const match = (): lsp_ext.Decision | undefined =>
            [...this.store.decisions.values()]
                .filter((d) => d.state === "pending" && d.title === title)
                .sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
        const found = match();
        if (found || !this.client) {
            return found;
        }
        // Offered before our list arrived (right after initialize): ask.
        try {
            const pending = await allPages((p) =>
                this.client!.sendRequest(lsp_ext.decisionList, { ...p, state: "pending" }),
            );
            for (const d of pending) {
                this.store.decisions.set(d.id, d);
            }
        } catch {
            return undefined;
        }
        return match();
    }

    /** Send a request on the running connection, starting it first if needed. */
    async request<P, R>(type: RequestType<P, R, void>, params: P): Promise<R> {
        if (this.connState === "reconnecting") {
            // The client restarts by itself: wait for it (a stuck restart fails below).
            await Promise.race([this.whenSettled(), new Promise((r) => setTimeout(r, 30_000))]);
        } else if (this.connState !== "running") {
            await this.start();
        }
        const client = this.client;
        if (!client || this.connState !== "running") {
            throw new ResponseError(NOT_CONNECTED, this.failure ?? "orch: not connected to the daemon");
        }
        // The typed overload cannot infer through our own generics; the types are fixed by `type`.
        return client.sendRequest(type as RequestType<unknown, R, void>, params as unknown) as Promise<R>;
    }

    /** Show a message, record it, and resolve with the action chosen (undefined if dismissed). */
    show(level: Shown["level"], text: string, actions: string[]): Thenable<string | undefined> {
        this.shown.push({ level, text, actions });
        if (this.shown.length > 200) {
            this.shown.splice(0, this.shown.length - 200);
        }
        const f =
            level === "error"
                ? vscode.window.showErrorMessage
                : level === "warning"
                  ? vscode.window.showWarningMessage
                  : vscode.window.showInformationMessage;
        return f(text, ...actions);
    }

    showError(text: string): void {
        void this.show("error", text, []);
    }

    private fail(message: string): void {
        this.failure = message;
        this.setState("failed");
        this.events.appendLine(`${stamp()} ${message}`);
        void this.show("error", message, ["Open Settings", "Show Log"]).then((choice) => {
            if (choice === "Open Settings") {
                void vscode.commands.executeCommand("workbench.action.openSettings", "orch.path");
            } else if (choice === "Show Log") {
                this.log.show();
            }
        });
    }

    private setState(s: ConnState): void {
        if (this.connState !== s) {
            this.connState = s;
            this.fireChanged();
        }
    }

    fireChanged(): void {
        if (this.changePending) {
            return;
        }
        this.changePending = true;
        queueMicrotask(() => {
            this.changePending = false;
            this.changed.fire();
        });
    }

    dispose(): void {
        void this.stop();
        for (const d of this.disposables) {
            d.dispose();
        }
    }
}

/**
 * The language client, minus its own error notifications: the library forces one on every
 * failed start ("orch client: couldn't create connection to server", with a write or connection
 * error instead of orch's words) and on failed restarts. The context says what failed, once,
 * with `orch lsp`'s stderr; the library's messages still go to the `orch` log.
 */
class OrchClient extends LanguageClient {
    override error(message: string, data?: unknown, _showNotification?: boolean | "force"): void {
        super.error(message, data, false);
    }
}

/** Declares what orch needs of the client, whatever the library's defaults. */
class OrchCapabilities implements StaticFeature {
    fillClientCapabilities(capabilities: ClientCapabilities): void {
        capabilities.window = {
            ...capabilities.window,
            // Decisions arrive as window/showMessageRequest, task progress as $/progress.
            showMessage: { messageActionItem: { additionalPropertiesSupport: true } },
            workDoneProgress: true,
        };
        capabilities.experimental = { ...(capabilities.experimental as object), orch: { client: "vscode" } };
    }
    initialize(): void {}
    getState(): { kind: "static" } {
        return { kind: "static" };
    }
    clear(): void {}
}

/** Every page of a list. */
export async function allPages<T>(get: (p: lsp_ext.ListParams) => Promise<lsp_ext.Page<T>>): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | undefined;
    for (;;) {
        const page = await get(cursor === undefined ? { limit: 1000 } : { limit: 1000, cursor });
        items.push(...page.items);
        if (!page.nextCursor || page.items.length === 0) {
            return items;
        }
        cursor = page.nextCursor;
    }
}

/** Whether a request failed because its connection closed (rather than by the daemon's answer). */
function connectionGone(e: unknown): boolean {
    return e instanceof ResponseError && (e.code === ErrorCodes.PendingResponseRejected || e.code === ErrorCodes.ConnectionInactive);
}

/** One `orch lsp` process: the tail of its stderr, and when it has ended. */
class LspProcess {
    /** The last 2000 characters of its stderr. */
    stderr = "";
    /** Resolves once it has exited and its stdio is read to the end (or it could not start). */
    readonly ended: Promise<void>;

    constructor(child: cp.ChildProcess) {
        this.ended = new Promise((resolve) => {
            child.once("close", () => resolve());
            child.once("error", () => resolve());
        });
    }

    /** Its stderr's last line once it has ended (waiting at most `ms`: it may linger), or "". */
    async why(ms = 3000): Promise<string> {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.ended, new Promise((r) => (timer = setTimeout(r, ms)))]);
        clearTimeout(timer);
        return this.stderr.trim().split("\n").pop()?.trim() ?? "";
    }
}

export function errorMessage(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
}

function stamp(): string {
    return new Date().toISOString().slice(11, 23);
}

/** One line per event in the Events channel. */
export function describeEvent(ev: lsp_ext.OrchEvent): string {
    const d = (ev.data ?? {}) as Record<string, unknown>;
    let what = "";
    if (typeof d.state === "string") {
        what = `${String(d.previous ?? "?")} -> ${d.state}${typeof d.evidence === "string" ? ` (${d.evidence})` : ""}`;
    } else if (typeof d.choice === "string") {
        what = `choice ${d.choice}${typeof d.reason === "string" ? ` (${d.reason})` : ""}`;
    } else if (d.decision && typeof d.decision === "object") {
        what = String((d.decision as lsp_ext.Decision).title);
    } else if (d.agent && typeof d.agent === "object") {
        what = `${(d.agent as lsp_ext.Agent).name} (${(d.agent as lsp_ext.Agent).kind})`;
    } else if (d.task && typeof d.task === "object") {
        what = String((d.task as lsp_ext.Task).title);
    } else if (ev.kind === "agent.exited" || ev.kind === "terminal.exited") {
        what = `exit ${String(d.exitCode ?? "?")}`;
    }
    return `${ev.time} #${ev.seq} ${ev.kind} ${ev.subject}${what ? ` ${what}` : ""}`;
}
