"""XML-RPC as xapi speaks it to SM drivers (and answers their callbacks): the only
module that knows the wire format.

Decoding uses pyexpat directly rather than ``xmlrpc.client``: every xapi call is a
fresh process and importing xmlrpc.client (http.client, email, ...) costs more
than the rest of a driver-info call together. The format accepted is XML-RPC as
xapi 26.1.4 writes it (strings without ``<string>``, ``<value/>`` for "") and as
any other writer would (typed scalars, whitespace between elements).
"""

import xml.parsers.expat

from framework.errors import SRError


class Request(object):
    """One decoded SMAPIv1 call: the command plus xapi's keyword struct."""

    def __init__(self, command, params):
        self.command = command
        self.params = params

    def get(self, key, default=''):
        value = self.params.get(key, default)
        return default if value is None else value

    @property
    def args(self):
        return self.params.get('args') or []

    @property
    def device_config(self):
        return self.params.get('device_config') or {}


# --- decoding ------------------------------------------------------------------

_NIL = object()
_SCALARS = ('string', 'int', 'i4', 'i8', 'boolean', 'double', 'nil',
            'dateTime.iso8601', 'base64')
_CONTAINERS = ('struct', 'array', 'data', 'member', 'name', 'value',
               'methodCall', 'methodName', 'params', 'param')


class _Decoder(object):
    """Turns an XML-RPC methodCall into (method_name, [params]); with
    ``root='methodResponse'``, a reply into [value] (``fault`` set for a fault)."""

    def __init__(self, root='methodCall'):
        self.stack = []       # open values: lists of [kind, payload]
        self.text = []
        self.method = None
        self.params = []
        self.member_names = []
        self.seen_root = False
        self.root = root
        self.fault = False

    def start(self, tag, attrs):
        if not self.seen_root:
            if tag != self.root:
                raise ValueError('root element is <%s>, expected <%s>' % (tag, self.root))
            self.seen_root = True
        elif tag == 'fault' and self.root == 'methodResponse':
            self.fault = True
            return
        if tag not in _SCALARS and tag not in _CONTAINERS and tag != self.root:
            raise ValueError('unexpected element <%s>' % tag)
        self.text = []
        if tag == 'value':
            self.stack.append(['value', None])
        elif tag == 'struct':
            self.stack.append(['struct', {}])
        elif tag == 'array':
            self.stack.append(['array', []])

    def chars(self, data):
        self.text.append(data)

    def end(self, tag):
        text = ''.join(self.text)
        self.text = []
        if tag == 'methodName':
            self.method = text.strip()
        elif tag == 'name':
            self.member_names.append(text)
        elif tag in _SCALARS:
            self.stack[-1][1] = _scalar(tag, text)
        elif tag in ('struct', 'array'):
            kind, payload = self.stack.pop()
            self.stack[-1][1] = payload
        elif tag == 'value':
            kind, payload = self.stack.pop()
            value = text if payload is None else payload  # untyped value = string
            if value is _NIL:
                value = None
            self._deliver(value)

    def _deliver(self, value):
        if not self.stack:
            self.params.append(value)
            return
        kind, payload = self.stack[-1]
        if kind == 'struct':
            if not self.member_names:
                raise ValueError('struct member without <name>')
            payload[self.member_names.pop()] = value
        elif kind == 'array':
            payload.append(value)
        else:
            raise ValueError('value nested directly in a value')


def _scalar(tag, text):
    if tag == 'string':
        return text
    if tag in ('int', 'i4', 'i8'):
        return int(text.strip())
    if tag == 'boolean':
        if text.strip() not in ('0', '1'):
            raise ValueError('bad boolean %r' % text)
        return text.strip() == '1'
    if tag == 'double':
        return float(text.strip())
    if tag == 'nil':
        return _NIL
    return text.strip()  # dateTime and base64 are kept as text; SMAPIv1 sends neither


def decode_call(document):
    """Parse one methodCall document; raise SRError('BadRequest') on anything else."""
    decoder = _Decoder()
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = decoder.start
    parser.EndElementHandler = decoder.end
    parser.CharacterDataHandler = decoder.chars
    try:
        parser.Parse(document.encode('utf-8', 'surrogateescape'), True)
    except (xml.parsers.expat.ExpatError, ValueError, IndexError, TypeError) as e:
        if _has_illegal_chars(document):
            raise SRError('IllegalXMLChar', 'the request carries characters that are not '
                          'legal in XML (in a name or description?)')
        raise SRError('BadRequest', 'malformed XML-RPC request: %s' % e)
    if not decoder.method:
        raise SRError('BadRequest', 'request has no methodName')
    return decoder.method, decoder.params


def decode_response(body):
    """The value of one methodResponse (bytes); a fault raises ``Fault``."""
    decoder = _Decoder('methodResponse')
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = decoder.start
    parser.EndElementHandler = decoder.end
    parser.CharacterDataHandler = decoder.chars
    parser.Parse(body, True)
    if len(decoder.params) != 1:
        raise ValueError('a methodResponse with %d values' % len(decoder.params))
    value = decoder.params[0]
    if decoder.fault:
        raise Fault(value.get('faultCode'), value.get('faultString'))
    return value


class Fault(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, code, text)
        self.code, self.text = code, text


def _has_illegal_chars(document):
    import re
    for m in re.finditer(r'&#(x[0-9a-fA-F]+|[0-9]+);', document):
        ref = m.group(1)
        code = int(ref[1:], 16) if ref[0] == 'x' else int(ref)
        if code > 0x10FFFF or not is_xml_char(chr(code)):
            return True
    return any(not is_xml_char(c) for c in document)


def decode_request(argv):
    """The SMAPIv1 request from a driver's argv: exactly one XML-RPC document."""
    if len(argv) != 2:
        raise SRError('BadRequest', 'expected exactly one argument (an XML-RPC '
                      'methodCall), got %d' % (len(argv) - 1))
    method, params = decode_call(argv[1])
    if len(params) != 1 or not isinstance(params[0], dict):
        raise SRError('BadRequest', 'expected one struct parameter, got %d '
                      'parameter(s)' % len(params))
    params = params[0]
    check_types(params)
    command = params.get('command', method)
    if command != method:
        raise SRError('BadRequest', 'methodName %r and command %r differ'
                      % (method, command))
    return Request(command, params)


# The request keys of SMAPIv1 and the XML-RPC type xapi sends each one as
# (docs: smapiv1 reference §2.1). Checked here, once, so that no handler or driver
# ever meets an int where it expects a string: a wrong type is BadRequest (143).
STRING, STRINGS, STRING_MAP = 'a string', 'an array of strings', 'a struct of strings'
FIELDS = dict([(key, STRING) for key in (
    'host_ref', 'command', 'session_ref', 'sr_ref', 'vdi_type', 'sr_uuid', 'vdi_ref',
    'vdi_location', 'vdi_uuid', 'new_uuid', 'subtask_of', 'vdi_on_boot',
    'vdi_allow_caching', 'local_cache_sr')] + [('args', STRINGS)] + [
    (key, STRING_MAP) for key in (
        'device_config', 'sr_sm_config', 'driver_params', 'vdi_sm_config')])


def _is(value, kind):
    if kind == STRING:
        return isinstance(value, str)
    if kind == STRINGS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def check_types(params):
    """Raise BadRequest naming every known key whose value has the wrong type."""
    wrong = ['%s must be %s' % (key, kind) for key, kind in sorted(FIELDS.items())
             if key in params and not _is(params[key], kind)]
    if wrong:
        raise SRError('BadRequest', 'wrong types in the request: ' + '; '.join(wrong))


# --- encoding ------------------------------------------------------------------

def xml_text(text):
    """``text`` as XML character data: &, < and > escaped."""
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def _escape(text):
    text = xml_text(text)
    if any(not is_xml_char(c) for c in text):
        # a reply must stay a valid document even when it quotes bad input
        text = ''.join(c if is_xml_char(c) else '\\x%02x' % ord(c) for c in text)
    return text


def is_xml_char(c):
    o = ord(c)
    return (o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD
            or 0x10000 <= o <= 0x10FFFF)


def _value(v):
    if v is None:
        return '<value><nil/></value>'
    if v is True or v is False:
        return '<value><boolean>%d</boolean></value>' % v
    if isinstance(v, int):
        return '<value><int>%d</int></value>' % v
    if isinstance(v, float):
        return '<value><double>%r</double></value>' % v
    if isinstance(v, str):
        return '<value><string>%s</string></value>' % _escape(v)
    if isinstance(v, dict):
        return '<value><struct>\n%s</struct></value>' % ''.join(
            '<member>\n<name>%s</name>\n%s\n</member>\n' % (_escape(str(k)), _value(x))
            for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return '<value><array><data>\n%s</data></array></value>' % ''.join(
            _value(x) + '\n' for x in v)
    raise TypeError('cannot encode %r' % type(v))


_HEAD = "<?xml version='1.0'?>\n<methodResponse>\n"


def encode_reply(value):
    return _HEAD + '<params>\n<param>\n%s</param>\n</params>\n</methodResponse>\n' % _value(value)


def encode_fault(code, message):
    return _HEAD + '<fault>\n%s\n</fault>\n</methodResponse>\n' % _value(
        {'faultCode': code, 'faultString': message})


def encode_call(method, params):
    """A methodCall document (vdi_generate_config returns one, as sm does)."""
    return "<?xml version='1.0'?>\n<methodCall>\n<methodName>%s</methodName>\n" \
           "<params>\n%s</params>\n</methodCall>\n" % (
               _escape(method), ''.join('<param>\n%s\n</param>\n' % _value(p)
                                        for p in params))
