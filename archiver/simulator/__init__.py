"""Faithful simulators of the Restcomm, Twilio and SignalWire Recordings APIs, with fault
injection, for the tests, ``archiver demo`` and ``archiver simulator --platform``. No module of
the archiver's core imports them; the CLI imports them lazily.

``RestcommSimulator`` serves ``{base_url}/2012-04-24/Accounts/{AC}/Recordings``;
``TwilioSimulator`` serves Twilio's ``{base_url}/2010-04-01/...`` (``base_url`` is the origin,
as ``https://api.twilio.com``) and ``SignalWireSimulator`` the same API under ``/api/laml``
(``base_url`` ends in it, as ``https://{space}.signalwire.com/api/laml``), with UUIDs for the
project ID and every SID. Twilio's mode has sub-accounts (``add_subaccount``; a parent's
credentials reach them, suspended or closed ones answer 401 code 20005), recording statuses
(``set_status``: media 404 until ``completed``), ``PageToken`` cursor paging with
``next_page_uri`` keeping the filters, whole-GMT-day ``DateCreated`` filters, wav/mp3 media
behind Basic auth (``media_mode="redirect"``: a 302 to a storage origin that refuses
credentials), DELETE 204 then 404, and ``concurrency_limit`` (429, code 20429).

The parts, each importing only those listed before it::

    bodies      recording bodies: WAV/MP4/MP3 headers, deterministic bytes, renditions
    store       accounts, recordings, deletions; the platform's SQL (order, filter, page)
    faults      Fault rules matched per request; standing knobs (latency, lying deletes, ...)
    java        Gson, Double.toString, SimpleDateFormat, parseInt as Restcomm's Java does them
    app         loopback listeners: a route's Reply sent, bent by its fault, and logged
    media       media served direct, chunked through a proxy, or redirected to a presigned origin
    restcomm_wire  Restcomm's paths, credentials, JSON/XML bodies, page query and envelope
    lifecycle   start, stop and async with, for every platform
    forward     a simulator's attributes kept by its parts (``sim.tz`` is ``sim.store.tz``)
    restcomm    what each Restcomm route answers; RestcommSimulator puts the parts together
    twilio_wire Twilio's paths, JSON resources, errors, page query, cursor and envelope
    twilio      what each Twilio route answers; TwilioSimulator, SignalWireSimulator
    command     ``archiver simulator`` / ``python -m archiver.simulator``

Another wire format is a module pair beside these over the same store, faults, media and
listeners.
"""

from archiver.simulator.app import RequestRecord
from archiver.simulator.bodies import Body, mp3_header, mp4_header, wav_header
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
from archiver.simulator.store import Account, SimRecording
from archiver.simulator.twilio import SignalWireSimulator, TwilioSimulator
from archiver.simulator.twilio_wire import DEFAULT_PROJECT_ID, rfc2822

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_PROJECT_ID",
    "Account",
    "Body",
    "Fault",
    "RequestRecord",
    "RestcommSimulator",
    "SignalWireSimulator",
    "SimRecording",
    "TwilioSimulator",
    "format_java_date",
    "gson_dumps",
    "java_double",
    "main",
    "mp3_header",
    "mp4_header",
    "parse_java_date_prefix",
    "rfc2822",
    "wav_header",
]
