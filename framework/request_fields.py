"""The fields of a request, parsed and checked before any backend is touched.

Sizes, uuids, locations, names, flags. A bad value is the SR fault the command's
callers expect (79 for sizes, 143 for uuids, 144 for locations). Values a command
makes itself (a new uuid, the time) are in framework.new_values; the driver's own
answers (is a primitive there, which volume is at a location) come from the
Invocation (framework.invocation).
"""

from framework.errors import SRError
from framework.wire import is_xml_char


_DIGITS = frozenset('0123456789')
_HEX = frozenset('0123456789abcdef')
_NAME_CHARS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-')


def parse_size(text, what='size'):
    # ASCII digits only: int() would also take ' 1', '1_0' and non-Latin digits
    if not isinstance(text, str) or not text or not set(text) <= _DIGITS:
        if isinstance(text, str) and text.startswith('-') and text[1:] and \
                set(text[1:]) <= _DIGITS:
            raise SRError('VDISize', '%s %s is negative' % (what, text))
        raise SRError('VDISize', '%s %r is not a whole number of bytes' % (what, text))
    return int(text)


def check_uuid(text, what):
    parts = text.split('-') if isinstance(text, str) else []
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or not set(''.join(parts)) <= _HEX:
        raise SRError('BadRequest', '%s %r is not a lower-case UUID' % (what, text))
    return text


def is_location(text):
    # a location names a backend object: never a path, never hidden
    return bool(text) and set(text) <= _NAME_CHARS and not text.startswith('.') \
        and len(text) <= 200


def check_location(text):
    if not is_location(text):
        raise SRError('VDIMissing', 'location %r cannot name a VDI of this SR' % (text,))
    return text


def check_vdi_size(cls, size):
    if size > cls.max_vdi_size:
        raise SRError('VDISize', 'size %d exceeds the maximum of %d bytes for this SR type'
                      % (size, cls.max_vdi_size))
    grain = cls.size_granularity
    return (size + grain - 1) // grain * grain


def check_xml_text(*texts):
    for text in texts:
        if any(not is_xml_char(c) for c in text):
            raise SRError('IllegalXMLChar', 'name or description contains characters '
                          'that are not legal in XML')


def flag(text):
    return str(text).lower() == 'true'
