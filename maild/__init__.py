"""maild: an email-centric technical-support ticketing daemon.

The pipeline of one message is `source -> spool -> parse -> guard -> thread -> store -> act`;
`maild.pipeline` orders the stages, the folders hold one stage each.
"""

__version__ = "0.1.0"
