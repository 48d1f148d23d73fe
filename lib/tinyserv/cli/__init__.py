"""The developer's machine (bin/tinyserv): the command line, the ssh transport, install, `tinyserv local`."""
