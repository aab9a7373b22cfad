// Tests for rocket.chat.integration.js, loaded the way Rocket.Chat runs it (a vm context).
// Run: node --test scripts/
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

function load() {
  const code = fs.readFileSync(path.join(__dirname, 'rocket.chat.integration.js'), 'utf8');
  const Script = vm.runInContext(`${code}\n;Script`, vm.createContext({}));
  return new Script();
}

// Objects from the vm realm do not deepEqual literals; compare plain copies.
const plain = (o) => JSON.parse(JSON.stringify(o));

test('form payload (upstream format), INFO', () => {
  const out = plain(load().process_incoming_request({
    request: { content: { projectFriendlyName: 'Team Dev', projectName: 'abc123-dev', statusCode: 'INFO', message: 'Successfully backed up db/app.\nBackup written to /backups/x.sql.gz.' } },
  }));
  assert.strictEqual(out.content.text, 'Status message received from [Team Dev](https://console.apps.silver.devops.gov.bc.ca/k8s/cluster/projects/abc123-dev/workloads):');
  assert.strictEqual(out.content.attachments[0].color, '#36A64F');
  assert.match(out.content.attachments[0].text, /Backup written to/);
});

test('ERROR is bold and red; WARN is orange', () => {
  const s = load();
  const err = plain(s.process_incoming_request({ request: { content: { projectName: 'p', statusCode: 'ERROR', message: 'Failed to backup db/app.' } } }));
  assert.match(err.content.text, /^\*\*Error message received from \[p\]\(.*\/projects\/p\/workloads\):\*\*$/);
  assert.strictEqual(err.content.attachments[0].color, '#A63636');
  const warn = plain(s.process_incoming_request({ request: { content: { statusCode: 'WARN', message: 'mirror failed' } } }));
  assert.strictEqual(warn.content.text, 'Warning message received:');
  assert.strictEqual(warn.content.attachments[0].color, '#FFA500');
});

test('JSON payload: level, title, database and a console link from the payload', () => {
  const out = plain(load().process_incoming_request({
    request: { content: { level: 'ERROR', event: 'backup_failed', title: 'Backup of db/app FAILED', database: 'db/app', message: 'Reason: x', projectName: 'p', consoleUrl: 'https://console.example/p' } },
  }));
  assert.strictEqual(out.content.text, '**Error message received from [p](https://console.example/p):**');
  assert.strictEqual(out.content.attachments[0].title, 'Backup of db/app FAILED');
  assert.deepStrictEqual(out.content.attachments[0].fields, [{ title: 'Database', value: 'db/app', short: true }]);
});

test('unknown level falls back to INFO; missing content does not throw', () => {
  const out = plain(load().process_incoming_request({ request: { content: { statusCode: 'LOUD' } } }));
  assert.strictEqual(out.content.attachments[0].color, '#36A64F');
  const empty = plain(load().process_incoming_request({ request: {} }));
  assert.strictEqual(empty.content.text, 'Status message received:');
});
