// A write burst for the SIGKILL test (store-faults.test.ts): saves turns and settings into the
// store at argv[2] as fast as it can, printing each number once its writes have returned
// (committed: acknowledged), until it is killed.
import { Store } from '../../../src/store/store.js';

const store = Store.open(process.argv[2]!);
for (let n = 0; ; n++) {
  store.saveTurn({
    platform: 'telegram',
    chatId: `burst-${n}`,
    userId: String(n),
    image: { bytes: new Uint8Array(4000).fill(n % 251), mime: 'image/png' },
    question: `question ${n}`,
    answer: `answer ${n} `.repeat(50),
    style: 'plain',
    messageIds: [`m${n}`],
  });
  store.setStyle('user', 'telegram', String(n), 'grumpy');
  process.stdout.write(`${n}\n`);
}
