// An agent's terminal in a VS Code terminal tab, as a Pseudoterminal: it paints the daemon's
// screen (`ansi`), then follows `orch/terminal/output`; keystrokes go back with
// `orch/terminal/write` (one write in flight, so they are never reordered); the tab's size goes
// to `orch/terminal/resize`; `resync` and reconnects repaint from the screen; a restart moves
// the view to the agent's new terminal. Closing the tab unsubscribes; the agent keeps running.

import * as vscode from "vscode";

import { Ctx, TerminalSink, errorMessage } from "./ctx";
import * as lsp_ext from "./lsp_ext";

/** The views open now, by agent id. */
const views = new Map<string, AgentTerminal>();

/** Open (or show) the terminal tab of `agent`. */
export function attach(ctx: Ctx, agent: lsp_ext.Agent): AgentTerminal {
    const existing = views.get(agent.id);
    if (existing && !existing.closed) {
        existing.terminal.show();
        return existing;
    }
    const view = new AgentTerminal(ctx, agent);
    views.set(agent.id, view);
    view.terminal.show();
    return view;
}

/** The open view of an agent, if any (for tests and commands). */
export function viewOf(agentId: string): AgentTerminal | undefined {
    const v = views.get(agentId);
    return v && !v.closed ? v : undefined;
}

export class AgentTerminal implements vscode.Pseudoterminal, TerminalSink {
    readonly terminal: vscode.Terminal;
    /** What was written to the view, oldest first (bounded): what a test reads back. */
    transcript = "";
    closed = false;
    private readonly writeEmitter = new vscode.EventEmitter<string>();
    readonly onDidWrite = this.writeEmitter.event;
    private readonly closeEmitter = new vscode.EventEmitter<number | void>();
    readonly onDidClose = this.closeEmitter.event;
    private tid: string;
    private size_: { cols: number; rows: number } | undefined;
    /** The screen is painted: output from now on is news (earlier output is in the screen). */
    private ready = false;
    private opened = false;
    private queue = "";
    private writing = false;
    private ended = false;
    private seenState: string;

    constructor(
        private readonly ctx: Ctx,
        private agent: lsp_ext.Agent,
    ) {
        this.tid = agent.terminalId;
        this.seenState = agent.state;
        this.terminal = vscode.window.createTerminal({
            name: `orch: ${agent.name}`,
            pty: this,
            iconPath: new vscode.ThemeIcon("hubot"),
        });
    }

    /** The tab's size in cells, once VS Code told it. */
    get size(): { cols: number; rows: number } | undefined {
        return this.size_;
    }

    get terminalId(): string {
        return this.tid;
    }

    open(dims: vscode.TerminalDimensions | undefined): void {
        this.opened = true;
        if (dims) {
            this.size_ = { cols: dims.columns, rows: dims.rows };
        }
        void this.follow(false);
    }

    close(): void {
        this.closed = true;
        this.ctx.terminals.delete(this.tid);
        views.delete(this.agent.id);
        if (this.ctx.state === "running") {
            this.ctx.request(lsp_ext.terminalUnsubscribe, { id: this.tid }).catch(() => undefined);
        }
    }

    handleInput(data: string): void {
        if (this.ended) {
            return;
        }
        this.queue += data;
        this.flush();
    }

    setDimensions(dims: vscode.TerminalDimensions): void {
        this.size_ = { cols: dims.columns, rows: dims.rows };
        this.sendSize();
    }

    // TerminalSink

    output(params: { id: string; data?: string; resync?: boolean }): void {
        if (params.id !== this.tid) {
            return;
        }
        if (params.resync) {
            void this.paint(true);
        } else if (this.ready && typeof params.data === "string") {
            this.write(params.data);
        }
    }

    reconnected(): void {
        if (this.opened && !this.closed) {
            void this.follow(true);
        }
    }

    agentChanged(agent: lsp_ext.Agent): void {
        if (agent.id !== this.agent.id || this.closed) {
            return;
        }
        // The store updates its records in place: compare with the state this view last saw.
        const previous = this.seenState;
        this.seenState = agent.state;
        this.agent = agent;
        if (agent.terminalId !== this.tid) {
            // Restarted in a new terminal: follow that one.
            this.ctx.terminals.delete(this.tid);
            this.ctx.request(lsp_ext.terminalUnsubscribe, { id: this.tid }).catch(() => undefined);
            this.tid = agent.terminalId;
            void this.follow(true);
        } else if (!lsp_ext.LIVE_STATES.has(previous) && lsp_ext.LIVE_STATES.has(agent.state) && this.ended) {
            // Live again in the same terminal (a daemon adopted it): follow it again.
            void this.follow(true);
        } else if (lsp_ext.LIVE_STATES.has(previous) && !lsp_ext.LIVE_STATES.has(agent.state)) {
            this.ended = true;
            this.write(`\r\n\x1b[2m[orch] agent ${agent.name} ${agent.state}\x1b[0m\r\n`);
        }
    }

    /**
     * Subscribe to the terminal, send our size, and paint its screen. A terminal whose program
     * ended refuses the subscription: its last screen is still painted, and keys are dropped.
     */
    private async follow(clear: boolean): Promise<void> {
        this.ready = false;
        this.ended = false;
        this.ctx.terminals.set(this.tid, this);
        try {
            await this.ctx.request(lsp_ext.terminalSubscribe, { id: this.tid });
            this.sendSize();
        } catch (e) {
            this.ended = true;
            this.ctx.events.appendLine(`attach ${this.agent.name}: ${errorMessage(e)}`);
        }
        await this.paint(clear);
    }

    /**
     * Subscribed first, then the screen: output that arrives before the screen is dropped (the
     * screen has it), output after it is new.
     */
    private async paint(clear: boolean): Promise<void> {
        const tid = this.tid;
        this.ready = false;
        try {
            const screen = await this.ctx.request(lsp_ext.terminalScreen, { id: tid });
            if (tid !== this.tid || this.closed) {
                return;
            }
            this.write((clear ? "\x1b[0m\x1b[H\x1b[2J" : "") + repaintOf(screen));
            this.ready = true;
        } catch (e) {
            this.write(`\r\n\x1b[31m[orch] cannot show ${this.agent.name}'s screen: ${errorMessage(e)}\x1b[0m\r\n`);
            this.ready = true;
        }
    }

    private sendSize(): void {
        const size = this.size_;
        if (!size || this.ended || this.ctx.state !== "running") {
            return;
        }
        this.ctx
            .request(lsp_ext.terminalResize, { id: this.tid, cols: size.cols, rows: size.rows })
            .catch((e: unknown) => this.ctx.events.appendLine(`resize ${this.agent.name}: ${errorMessage(e)}`));
    }

    /** Keep exactly one write in flight; what is typed meanwhile goes in the next one. */
    private flush(): void {
        if (this.writing || this.queue === "") {
            return;
        }
        const data = this.queue;
        this.queue = "";
        this.writing = true;
        this.ctx
            .request(lsp_ext.terminalWrite, { id: this.tid, data })
            .catch((e: unknown) => {
                this.queue = "";
                this.ctx.showError(`orch: typing into ${this.agent.name}: ${errorMessage(e)}`);
            })
            .finally(() => {
                this.writing = false;
                this.flush();
            });
    }

    private write(data: string): void {
        if (this.closed) {
            return;
        }
        this.transcript = (this.transcript + data).slice(-200_000);
        this.writeEmitter.fire(data);
    }
}

/** The sequence that repaints a screen: its `ansi`, else its lines. */
function repaintOf(screen: lsp_ext.Screen): string {
    if (screen.ansi) {
        return screen.ansi;
    }
    return `\x1b[H\x1b[2J${screen.lines.join("\r\n")}\x1b[${screen.cursor.row + 1};${screen.cursor.col + 1}H`;
}
