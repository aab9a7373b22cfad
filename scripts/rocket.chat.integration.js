/* Rocket.Chat incoming-webhook script for backup-container.
 *
 * Paste into Administration > Integrations > Incoming > Script (Script Enabled).
 * Understands both payloads backup-container sends:
 *  - the default form format (as the bash version): projectFriendlyName, projectName,
 *    statusCode (INFO | WARN | ERROR), message;
 *  - WEBHOOK_FORMAT=json: the same plus level, event, title, database, time, details.
 * Colours: INFO green, WARN orange, ERROR red. The title links to the project's console page:
 * CONSOLE_URL_TEMPLATE below ({projectName} is replaced), or a `consoleUrl` in the payload.
 */
const CONSOLE_URL_TEMPLATE = 'https://console.apps.silver.devops.gov.bc.ca/k8s/cluster/projects/{projectName}/workloads';

const COLOURS = { INFO: '#36A64F', WARN: '#FFA500', ERROR: '#A63636' };
const LABELS = { INFO: 'Status', WARN: 'Warning', ERROR: 'Error' };

class Script {
  process_incoming_request({ request }) {
    const c = request.content || {};
    const level = String(c.statusCode || c.level || 'INFO').toUpperCase();
    const known = Object.prototype.hasOwnProperty.call(COLOURS, level) ? level : 'INFO';
    const project = c.projectName || '';
    const name = c.projectFriendlyName || project;
    const link = c.consoleUrl || (project ? CONSOLE_URL_TEMPLATE.replace('{projectName}', encodeURIComponent(project)) : '');
    let title = `${LABELS[known]} message received`;
    if (name) {
      title += link ? ` from [${name}](${link})` : ` from ${name}`;
    }
    title += ':';
    if (known === 'ERROR') {
      title = `**${title}**`;
    }
    const attachment = { text: String(c.message || ''), color: COLOURS[known] };
    if (c.title) {
      attachment.title = String(c.title);
    }
    if (c.database) {
      attachment.fields = [{ title: 'Database', value: String(c.database), short: true }];
    }
    return { content: { text: title, attachments: [attachment] } };
  }
}
