// The test entry VS Code loads inside the extension host (`extensionTestsPath`): runs every
// `*.test.js` beside it with mocha and writes a transcript, one line per test, to
// `$ORCH_VSCODE_RESULTS` (the extension host's console is not visible to the runner). VS Code
// then reports the exit code to the browser's `codeAutomationExit`.

import * as fs from "node:fs";
import * as path from "node:path";
import Mocha from "mocha";

export async function run(): Promise<void> {
    const results = process.env.ORCH_VSCODE_RESULTS;
    const say = (line: string): void => {
        console.log(line);
        if (results) {
            fs.appendFileSync(results, `${line}\n`);
        }
    };
    const mocha = new Mocha({ ui: "bdd", timeout: 120_000, color: false, bail: true, reporter: "spec" });
    const grep = process.env.ORCH_VSCODE_GREP;
    if (grep) {
        mocha.grep(grep);
    }
    for (const f of fs.readdirSync(__dirname).sort()) {
        if (f.endsWith(".test.js")) {
            mocha.addFile(path.join(__dirname, f));
        }
    }
    await new Promise<void>((resolve, reject) => {
        const runner = mocha.run((failures) => {
            say(`${runner.stats?.passes ?? 0} passed, ${failures} failed`);
            if (failures > 0) {
                reject(new Error(`${failures} test(s) failed`));
            } else {
                resolve();
            }
        });
        runner.on("pass", (t) => say(`ok ${t.fullTitle()} (${t.duration ?? 0} ms)`));
        runner.on("fail", (t, err: Error) => say(`FAIL ${t.fullTitle()}: ${err.stack ?? err.message}`));
    });
}
