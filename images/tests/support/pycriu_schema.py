# Prints the message schemas compiled into the installed crit/pycriu as JSON:
# {"messages": {name: {number: [name, label, type, type_name, default]}},
#  "enums": {name: {value_name: number}}}
import importlib, json, pkgutil, sys
sys.path.insert(0, '/usr/lib/python3/dist-packages')
import pycriu.images as images
import pycriu.rpc_pb2 as rpc
from google.protobuf import descriptor_pb2

messages, enums = {}, {}

def walk_enum(prefix, e):
    enums[prefix + e.name] = {v.name: v.number for v in e.value}

def walk_msg(prefix, m):
    name = prefix + m.name
    messages[name] = {
        str(f.number): [f.name, f.label, f.type, f.type_name.lstrip('.'),
                        f.default_value if f.HasField('default_value') else None]
        for f in m.field
    }
    for e in m.enum_type:
        walk_enum(name + '.', e)
    for n in m.nested_type:
        walk_msg(name + '.', n)

def walk_file(mod, prefix):
    fd = descriptor_pb2.FileDescriptorProto()
    mod.DESCRIPTOR.CopyToProto(fd)
    for e in fd.enum_type:
        walk_enum(prefix, e)
    for m in fd.message_type:
        walk_msg(prefix, m)

for info in pkgutil.iter_modules(images.__path__):
    if info.name.endswith('_pb2') and info.name not in ('opts_pb2', 'img_streamer_pb2'):
        walk_file(importlib.import_module('pycriu.images.' + info.name), '')
walk_file(rpc, 'rpc.')
json.dump({'messages': messages, 'enums': enums}, sys.stdout)
