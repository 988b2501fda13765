// cache-tests-summary.mjs SUITE RESULTS.json [--list]
//
// Summarises a results file of the http-tests/cache-tests client (the
// suite checked out at SUITE, never vendored here) the way cache-tests.fyi
// counts them: passes (✅), required failures (⛔️), optional failures
// (⚠️), checks (yes/no), setup, harness, dependency failures and retries.
// With --list it also prints the id of every required failure and of
// every test that did not pass.
import path from 'path'
import fs from 'fs'
import { pathToFileURL } from 'url'

const [suite, file, flag] = process.argv.slice(2)
if (!suite || !file) {
  console.error('usage: node cache-tests-summary.mjs SUITE RESULTS.json [--list]')
  process.exit(2)
}
const load = p => import(pathToFileURL(path.resolve(suite, p)).href)
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const tests = (await load('tests/index.mjs')).default
const results = JSON.parse(fs.readFileSync(file, 'utf8'))

const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const counts = {}
const lists = {}
let total = 0
for (const suiteDef of tests) {
  for (const test of suiteDef.tests) {
    total++
    const r = determineTestResult(tests, test.id, results)
    const name = names[r[2]] || 'unknown'
    counts[name] = (counts[name] || 0) + 1
    ;(lists[name] = lists[name] || []).push(test.id)
  }
}
console.log(`tests ${total} pass ${counts.pass || 0} required-fail ${counts.fail || 0} optional-fail ${counts.optional_fail || 0} ` +
  `yes ${counts.yes || 0} no ${counts.no || 0} setup ${counts.setup_fail || 0} harness ${counts.harness_fail || 0} ` +
  `dependency ${counts.dependency_fail || 0} retry ${counts.retry || 0} untested ${counts.untested || 0}`)
if (flag === '--list') {
  for (const k of ['fail', 'optional_fail', 'setup_fail', 'harness_fail', 'dependency_fail', 'retry', 'no']) {
    if (lists[k]) console.log(`${k}: ${lists[k].join(' ')}`)
  }
}
