// An independent client: submit a PAS job as plain JSON with the official JS client,
// follow its status events and print the final status as JSON.
// usage: node submit.mjs NATS_URL RUN_ID JOB_JSON
import { connect } from "@nats-io/transport-node";

const [url, runId, jobJson] = process.argv.slice(2);
const nc = await connect({ servers: url });
const enc = new TextEncoder();
const dec = new TextDecoder();

const sub = nc.subscribe(`pas.run.${runId}.status`);
const done = (async () => {
  for await (const m of sub) {
    const ev = JSON.parse(dec.decode(m.data));
    if (["completed", "failed", "cancelled"].includes(ev.status)) return ev.status;
  }
})();

const job = JSON.parse(jobJson);
job.run_id = runId;
const reply = await nc.request("pas.gateway.submit", enc.encode(JSON.stringify(job)), { timeout: 10000 });
if (reply.headers && reply.headers.get("Nats-Service-Error-Code")) {
  console.error("submit failed", dec.decode(reply.data));
  process.exit(2);
}
const ack = JSON.parse(dec.decode(reply.data));
const timer = setTimeout(() => { console.error("timeout"); process.exit(3); }, 60000);
const terminal = await done;
clearTimeout(timer);
const st = await nc.request("pas.gateway.status", enc.encode(JSON.stringify({ run_id: runId })), { timeout: 10000 });
console.log(JSON.stringify({ ack, terminal, status: JSON.parse(dec.decode(st.data)) }));
await nc.drain();
