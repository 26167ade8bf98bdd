"""`pas replay`: a run's timeline rebuilt from JetStream alone (PAS_EVENTS and PAS_COMMS, never KV).

    source   read a stream's messages for one run, in stream order (optionally following)
    timeline build the timeline (steps per tier, task bars, LLM calls, failovers, critical path)
    html     one self-contained page with a Gantt chart (inline SVG/CSS)
    rebuild  re-derive the KV run tree from the events and compare it with KV
    publish  re-publish a past run's events under pas.replay.<run_id>.> at a chosen speed
"""
