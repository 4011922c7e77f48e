/**
 * The mock upstream in a process of its own, as a real upstream is: the benchmark's client, the
 * gateways and the upstream then each pay the cross-process hops real traffic pays. (In the
 * client's own process, "direct" calls skipped them and every gateway's added latency was
 * overstated by that much.) Prints one JSON line `{ "origin": … }` when listening.
 */
import { startMockUpstream } from '../test/mock-upstream/index.ts';

const apiKey = process.env.MOCK_API_KEY;
if (!apiKey) throw new Error('MOCK_API_KEY must be set');
const mock = await startMockUpstream({ apiKey, host: '127.0.0.1', record: false });
process.stdout.write(`${JSON.stringify({ origin: mock.origin })}\n`);
process.on('SIGTERM', () => void mock.close().then(() => process.exit(0)));
