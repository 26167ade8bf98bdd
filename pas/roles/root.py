"""PAS Root: owns each run's lifecycle: queued -> running -> completed | failed | cancelled."""

from __future__ import annotations

from nats.aio.msg import Msg

from pas import runs as R
from pas import subjects as S
from pas import wire
from pas.agent import Role, WorkSpec


class RootRole(Role):
    description = "PAS Root: registers runs and ends them"

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.CONSUMER_ROOT, wire.RunRef, self.start_run, w.handler_concurrency, w.ack_wait_s),
            WorkSpec(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE, wire.RunEvent, self.end_run, w.handler_concurrency, w.ack_wait_s),
        ]

    async def start_run(self, ref: wire.RunRef, msg: Msg) -> None:
        got = await R.get_run(self.bus, ref.run_id)
        if got is None:
            return  # nothing to start (expired or foreign message)
        run, _ = got
        if run.status in wire.TERMINAL_RUN:
            return
        if run.status == "queued":
            run.status = "running"
            run.started_at = wire.now()
            await R.put_run(self.bus, run)
            await R.notify(self.bus, S.run_status(run.run_id), R.event(run.run_id, "run", "running", self.me.id))
        await self.agent.comms.log(self.me.id, "architect", "CMD", f"plan run {run.run_id}: {run.title}",
                                   run.run_id, "running")
        await self.bus.publish_js(S.WORK_ARCHITECT, ref, msg_id=f"{run.run_id}:architect")

    async def end_run(self, ev: wire.RunEvent, msg: Msg) -> None:
        got = await R.get_run(self.bus, ev.run_id)
        if got is None:
            return
        run, _ = got
        if run.status in wire.TERMINAL_RUN:
            return
        run.status = "completed" if ev.status == "completed" else ("cancelled" if ev.status == "cancelled" else "failed")
        run.finished_at = wire.now()
        run.message = ev.message + (f"; {run.message}" if run.message else "")  # keep degraded notes
        await R.put_run(self.bus, run)
        await R.emit(self.bus, S.run_status(run.run_id),
                     R.event(run.run_id, "run", run.status, self.me.id, message=ev.message),
                     msg_id=f"{run.run_id}:status:final")
        await self.agent.comms.log(self.me.id, "gateway", "STATUS", f"run {run.run_id} {run.status}",
                                   run.run_id, run.status)
