// `vistyle start` with Discord configured through its environment variables (DISCORD_TOKEN,
// DISCORD_APPLICATION_ID, DISCORD_GUILD_ID, DISCORD_MENTION_MODE, DISCORD_API_ROOT,
// DISCORD_GATEWAY_URL): the real discord.js client against the fake Discord, the real engine on a
// tiny checkpoint; a /ask and a mention are answered, then it shuts down cleanly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runStart, type RunningBot } from '../../src/cli/commands/start.js';
import { FakeDiscord, Intent } from '../support/fake-discord/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { FIXTURE_PNG, finalChannelReply, finalReply } from './harness.js';

describe('vistyle start with Discord', () => {
  it('runs the Discord adapter from its environment variables, answers, and stops cleanly', async () => {
    const { modelDir } = await tinyModel();
    const fake = await FakeDiscord.start();
    fake.advertisedGatewayUrl = 'ws://127.0.0.1:9'; // only DISCORD_GATEWAY_URL leads to the gateway
    const home = mkdtempSync(join(tmpdir(), 'vistyle-start-discord-'));
    let logs = '';
    const logDestination = new Writable({
      write(chunk, _encoding, done) {
        logs += String(chunk);
        done();
      },
    });
    const stop = new AbortController();
    let app: RunningBot | undefined;
    const running = runStart({
      env: {
        DISCORD_TOKEN: fake.token,
        DISCORD_APPLICATION_ID: fake.applicationId,
        DISCORD_GUILD_ID: fake.guildId,
        DISCORD_MENTION_MODE: 'true',
        DISCORD_API_ROOT: `${fake.apiRoot}/v10`,
        DISCORD_GATEWAY_URL: fake.gatewayUrl,
        VISTYLE_MODEL_DIR: modelDir,
        VISTYLE_HOME: home,
        VISTYLE_THREADS: '1',
        VISTYLE_LOG_LEVEL: 'info',
        VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
      },
      signal: stop.signal,
      logDestination,
      onStarted: (started) => {
        app = started;
      },
    });
    try {
      await fake.waitFor(() => app, 'vistyle start', 120_000);
      expect(app!.adapters.map((a) => a.name)).toEqual(['discord']);
      expect(fake.gateway.identifies[0]!.intents & Intent.MessageContent).toBe(Intent.MessageContent);
      expect(fake.registeredCommands(fake.guildId).map((c) => c.name).sort()).toEqual(['Ask about this image', 'ask', 'help', 'language', 'queue', 'reload', 'reset', 'style', 'styles']);

      const user = fake.createUser('rosa');
      const image = fake.attachment({ filename: 'cat.png', contentType: 'image/png', data: FIXTURE_PNG });
      const interaction = fake.slashCommand('ask', { image, question: 'what is this?' }, { user });
      const reply = await finalReply(fake, interaction);
      expect(reply.original?.content.length).toBeGreaterThan(0);

      const mention = fake.userMessage({ user, attachments: [image], mentionBot: true });
      await finalChannelReply(fake, fake.textChannel.id, mention.id);
    } finally {
      stop.abort();
      await running;
      await fake.close();
      rmSync(home, { recursive: true, force: true });
    }
    expect(logs).toContain('"msg":"discord connected"');
    expect(logs).toContain('"msg":"stopped"');
    expect(logs).not.toContain(fake.token);
  }, 180_000);
});
