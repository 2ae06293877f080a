#!/usr/bin/env node
// Compile ludex's Solidity sources offline with the pinned solc-js (package.json) and write
// one JSON artifact per deployable contract, plus manifest.json, to the artifacts directory.
//
//   node scripts/compile-contracts.mjs [--sources DIR] [--out DIR] [--check]
//
//   --sources DIR  where the .sol files are (default: contracts), searched recursively
//   --out DIR      where the artifacts go (default: src/ludex/chain/artifacts)
//   --check        write nothing; compare the out dir with a fresh compilation and exit 1
//                  naming every artifact that differs, is missing or is stale
//
// Every source unit is named `contracts/<path relative to DIR>` whatever DIR really is, so
// the metadata hash at the end of the bytecode, and hence the artifacts, are the same byte
// for byte from any checkout. Exit codes: 0 done (or artifacts match), 1 compiler error or
// mismatch, 2 bad usage. See docs/contracts.md.
//
// This script never writes outside the out dir, never touches the sources and never uses
// the network: solc-js is the compiler bundled in node_modules.

import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

const require = createRequire(import.meta.url);

const UNIT_PREFIX = "contracts/";
const MANIFEST = "manifest.json";
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 20000 },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
  viaIR: true,
};

class UsageError extends Error {}
class CompileError extends Error {}

function parseArgs(argv) {
  const options = { sources: "contracts", out: "src/ludex/chain/artifacts", check: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === "--check") {
      options.check = true;
    } else if (arg === "--sources" || arg === "--out") {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith("--")) {
        throw new UsageError(`${arg} needs a directory`);
      }
      options[arg.slice(2)] = value;
      i += 1;
    } else if (arg === "--help" || arg === "-h") {
      options.help = true;
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return options;
}

function isInside(child, parent) {
  const relative = path.relative(parent, child);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

// Every .sol file under `root` as [unitName, absolutePath], sorted by unit name.
// Symbolic links are not followed: a unit name must say where its source lives.
function findSources(root) {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.isFile() && entry.name.endsWith(".sol")) {
        const relative = path.relative(root, full).split(path.sep).join("/");
        found.push([UNIT_PREFIX + relative, full]);
      }
    }
  };
  walk(root);
  return found.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

// JSON with every object's keys sorted, 2-space indent and a trailing newline.
function render(value) {
  const sortKeys = (v) => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sortKeys(v[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

// Imports of units that are not among the sources (a file solc did not get up front):
// only `contracts/...` paths, read from the sources dir and never from outside it.
function importCallback(sourcesDir) {
  return (unitName) => {
    if (!unitName.startsWith(UNIT_PREFIX)) {
      return { error: `${unitName}: only imports under ${UNIT_PREFIX} resolve (ludex has no remappings)` };
    }
    const full = path.resolve(sourcesDir, unitName.slice(UNIT_PREFIX.length));
    if (!isInside(full, sourcesDir)) {
      return { error: `${unitName}: resolves outside the sources directory` };
    }
    try {
      return { contents: fs.readFileSync(full, "utf8") };
    } catch (exc) {
      return { error: `${unitName}: ${exc.message}` };
    }
  };
}

// Compile every source in one standard-JSON run; returns the files to write as a Map of
// file name to text. Throws CompileError after printing solc's messages.
function compile(sourcesDir) {
  const solc = require("solc");
  const units = findSources(sourcesDir);
  if (units.length === 0) {
    throw new CompileError(`no .sol files under ${sourcesDir}`);
  }
  const sources = {};
  const digests = {};
  for (const [unit, full] of units) {
    const bytes = fs.readFileSync(full);
    sources[unit] = { content: bytes.toString("utf8") };
    digests[unit] = sha256(bytes);
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), { import: importCallback(sourcesDir) }),
  );

  let failed = false;
  for (const message of output.errors ?? []) {
    process.stderr.write(`${(message.formattedMessage ?? message.message).trimEnd()}\n`);
    if (message.severity === "error") failed = true;
  }
  if (failed) {
    throw new CompileError("compilation failed; nothing was written");
  }

  const version = solc.version();
  const files = new Map();
  const owners = new Map();
  for (const unit of Object.keys(output.contracts ?? {}).sort()) {
    const contracts = output.contracts[unit];
    for (const name of Object.keys(contracts).sort()) {
      const { abi, evm } = contracts[name];
      if (!evm.bytecode.object) continue; // interfaces and abstract contracts
      if (owners.has(name)) {
        throw new CompileError(
          `contract ${name} is defined in both ${owners.get(name)} and ${unit}; ` +
            "artifacts are named by contract, so rename one of them",
        );
      }
      if (`${name}.json` === MANIFEST) {
        throw new CompileError(`contract ${name} (${unit}) would overwrite ${MANIFEST}; rename it`);
      }
      owners.set(name, unit);
      files.set(
        `${name}.json`,
        render({
          abi,
          bytecode: `0x${evm.bytecode.object}`,
          compiler: { settings: SETTINGS, version },
          contractName: name,
          deployedBytecode: `0x${evm.deployedBytecode.object}`,
          sourceName: unit,
          sourceSha256: digests[unit],
        }),
      );
    }
  }
  files.set(
    MANIFEST,
    render({ compiler: version, contracts: Object.fromEntries(owners), sources: digests }),
  );
  return files;
}

// The *.json files in the out dir: all of them are this script's to manage.
function existingArtifacts(outDir) {
  if (!fs.existsSync(outDir)) return [];
  return fs
    .readdirSync(outDir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".json"))
    .map((entry) => entry.name)
    .sort();
}

function write(files, outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  let written = 0;
  for (const [name, text] of files) {
    const target = path.join(outDir, name);
    if (fs.existsSync(target) && fs.readFileSync(target, "utf8") === text) continue;
    fs.writeFileSync(target, text);
    written += 1;
  }
  const stale = existingArtifacts(outDir).filter((name) => !files.has(name));
  for (const name of stale) {
    fs.rmSync(path.join(outDir, name));
    process.stdout.write(`removed stale ${name}\n`);
  }
  const count = files.size - 1;
  process.stdout.write(
    `compiled ${count} contract${count === 1 ? "" : "s"} into ${outDir} ` +
      `(${written} file${written === 1 ? "" : "s"} written)\n`,
  );
}

// Compare in memory: a fresh compilation never needs to touch the disk to be checked.
function check(files, outDir) {
  const problems = [];
  for (const [name, text] of files) {
    const target = path.join(outDir, name);
    if (!fs.existsSync(target)) {
      problems.push(`missing: ${name}`);
    } else if (fs.readFileSync(target, "utf8") !== text) {
      problems.push(`differs: ${name}`);
    }
  }
  for (const name of existingArtifacts(outDir)) {
    if (!files.has(name)) problems.push(`stale: ${name}`);
  }
  if (problems.length > 0) {
    for (const problem of problems) process.stderr.write(`${problem}\n`);
    process.stderr.write(
      `artifacts in ${outDir} do not match the sources; run \`ludex chain compile\` ` +
        "and commit the result\n",
    );
    return 1;
  }
  process.stdout.write("artifacts match the sources\n");
  return 0;
}

function main(argv) {
  let options;
  try {
    options = parseArgs(argv);
  } catch (exc) {
    if (!(exc instanceof UsageError)) throw exc;
    process.stderr.write(`compile-contracts: ${exc.message}\n`);
    process.stderr.write("usage: node scripts/compile-contracts.mjs [--sources DIR] [--out DIR] [--check]\n");
    return 2;
  }
  if (options.help) {
    process.stdout.write("usage: node scripts/compile-contracts.mjs [--sources DIR] [--out DIR] [--check]\n");
    return 0;
  }
  const sourcesDir = path.resolve(options.sources);
  const outDir = path.resolve(options.out);
  if (!fs.existsSync(sourcesDir) || !fs.statSync(sourcesDir).isDirectory()) {
    process.stderr.write(`compile-contracts: ${sourcesDir} is not a directory\n`);
    return 2;
  }
  if (isInside(outDir, sourcesDir)) {
    // Stale *.json files are deleted from the out dir; never inside the sources.
    process.stderr.write(`compile-contracts: --out must not be inside ${sourcesDir}\n`);
    return 2;
  }
  try {
    const files = compile(sourcesDir);
    if (options.check) return check(files, outDir);
    write(files, outDir);
    return 0;
  } catch (exc) {
    if (!(exc instanceof CompileError)) throw exc;
    process.stderr.write(`compile-contracts: ${exc.message}\n`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
