"""A faithful simulator of the Restcomm Recordings API, with fault injection, for the tests,
``archiver demo`` and ``archiver simulator``. No module of the archiver's core imports it; the
CLI imports it lazily.

The parts, each importing only those listed before it::

    bodies      recording bodies: WAV/MP4 headers, deterministic bytes
    store       accounts, recordings, deletions; the platform's SQL (order, filter, page)
    faults      Fault rules matched per request; standing knobs (latency, lying deletes, ...)
    java        Gson, Double.toString, SimpleDateFormat, parseInt as Restcomm's Java does them
    app         loopback listeners: a route's Reply sent, bent by its fault, and logged
    media       media served direct, chunked through a proxy, or redirected to a presigned origin
    restcomm_wire  Restcomm's paths, credentials, JSON/XML bodies, page query and envelope
    forward     a simulator's attributes kept by its parts (``sim.tz`` is ``sim.store.tz``)
    restcomm    what each Restcomm route answers; RestcommSimulator puts the parts together
    command     ``archiver simulator`` / ``python -m archiver.simulator``

Another wire format (Twilio's cursor paging, say) is a module pair beside ``restcomm*`` over
the same store, faults, media and listeners.
"""

from archiver.simulator.app import RequestRecord
from archiver.simulator.bodies import mp4_header, wav_header
from archiver.simulator.command import main
from archiver.simulator.faults import Fault
from archiver.simulator.java import (
    format_java_date,
    gson_dumps,
    java_double,
    parse_java_date_prefix,
)
from archiver.simulator.restcomm import RestcommSimulator
from archiver.simulator.restcomm_wire import API_VERSION, DEFAULT_ACCOUNT_SID
from archiver.simulator.store import SimRecording

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "Fault",
    "RequestRecord",
    "RestcommSimulator",
    "SimRecording",
    "format_java_date",
    "gson_dumps",
    "java_double",
    "main",
    "mp4_header",
    "parse_java_date_prefix",
    "wav_header",
]
