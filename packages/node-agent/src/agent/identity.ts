import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair, parsePrivateKey, privateKeyPem, type KeyPair } from '@lowcloud/api';
import { writeFileAtomic } from '@lowcloud/sandbox';

/** The agent's Ed25519 key pair, made on first start (0600) and kept in the state directory. */
export function loadOrCreateIdentity(stateDir: string): KeyPair {
  const file = path.join(stateDir, 'agent.key');
  if (fs.existsSync(file)) {
    const pair = parsePrivateKey(fs.readFileSync(file, 'utf8'), file);
    // An agent that died between its two key files: the public one is made again from the private.
    if (!fs.existsSync(path.join(stateDir, 'agent.pub'))) writeFileAtomic(path.join(stateDir, 'agent.pub'), `${pair.publicKey}\n`);
    return pair;
  }
  const pair = generateKeyPair();
  writeFileAtomic(file, privateKeyPem(pair.privateKey), { mode: 0o600 });
  writeFileAtomic(path.join(stateDir, 'agent.pub'), `${pair.publicKey}\n`);
  return pair;
}

/**
 * A self-signed TLS certificate for the agent. Clients do not trust it through a CA: the agent
 * proves its identity by signing the certificate's fingerprint with its pinned Ed25519 key.
 * Made with Debian's openssl (Node has no API to create X.509 certificates).
 */
export function loadOrCreateCertificate(stateDir: string): { cert: Buffer; key: Buffer } {
  const certFile = path.join(stateDir, 'tls.crt');
  const keyFile = path.join(stateDir, 'tls.key');
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3650', '-subj', '/CN=lowcloud-agent', '-keyout', `${keyFile}.tmp`, '-out', `${certFile}.tmp`], { stdio: 'ignore' });
    fs.chmodSync(`${keyFile}.tmp`, 0o600);
    fs.renameSync(`${keyFile}.tmp`, keyFile);
    fs.renameSync(`${certFile}.tmp`, certFile);
  }
  return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
}
