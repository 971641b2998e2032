#!/usr/bin/env python3
"""The mail lab's Thunderbird autoconfig server, for `mail2ticket detect`'s tests.

Serves one clientConfig file (Mozilla's autoconfig format, v1.1) over HTTPS with the lab's
certificate, at both places a mail client looks:

  https://autoconfig.auto.example.test:PORT/mail/config-v1.1.xml
  https://auto.example.test:PORT/.well-known/autoconfig/mail/config-v1.1.xml

(the lab's name server points both names at 127.0.0.1). The file names the lab's own servers
(mail.example.test: IMAP over TLS, POP3 over TLS, submission with STARTTLS) with the user name
%EMAILLOCALPART%, so a test sees it was read and its placeholder filled in. Every other path
answers 404.

  autoconfig-server.py --port PORT --cert PEM --key PEM --mail-host HOST
                       --imaps-port N --pop3s-port N --submission-port N [--host 127.0.0.1]
"""

import argparse
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")


def config_file(args):
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="auto.example.test">
    <domain>auto.example.test</domain>
    <displayName>mail2ticket lab (autoconfig)</displayName>
    <displayShortName>lab</displayShortName>
    <incomingServer type="imap">
      <hostname>{args.mail_host}</hostname>
      <port>{args.imaps_port}</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>{args.mail_host}</hostname>
      <port>{args.pop3s_port}</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{args.mail_host}</hostname>
      <port>{args.submission_port}</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
""".encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--mail-host", required=True)
    parser.add_argument("--imaps-port", type=int, required=True)
    parser.add_argument("--pop3s-port", type=int, required=True)
    parser.add_argument("--submission-port", type=int, required=True)
    # Only marks the process as this lab's (scripts/mail-lab finds leftovers by it).
    parser.add_argument("--lab-dir", default="")
    args = parser.parse_args()
    body = config_file(args)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if urlsplit(self.path).path in PATHS:
                self.send_response(200)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, fmt, *a):
            sys.stderr.write("autoconfig-server: " + (fmt % a) + "\n")

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
