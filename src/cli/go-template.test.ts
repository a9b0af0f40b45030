import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { alignTabs, humanDuration, humanSize, parseDuration } from './format-output.js';
import { parseFormatFlag, parseGoTemplate, printValue } from './go-template.js';

const data = {
  Id: 'sha256:abc',
  RepoTags: ['app:latest', 'app:v2'],
  Config: { Cmd: ['sh', '-c', 'echo hi'], Env: ['A=1'], Labels: { b: '2', a: '1' }, WorkingDir: '' },
  Size: 2147840,
  Empty: [],
  Null: null,
};
const render = (t: string, d: unknown = data): string => parseGoTemplate(t).render(d);

describe('go-template', () => {
  it('selects nested fields and prints them as Go %v does', () => {
    expect(render('{{.Config.Cmd}}')).toBe('[sh -c echo hi]');
    expect(render('{{.Id}}')).toBe('sha256:abc');
    expect(render('{{.Size}}')).toBe('2147840');
    expect(render('{{.Config.Labels}}')).toBe('map[a:1 b:2]');
    expect(render('{{.Null}}')).toBe('<nil>');
    expect(render('{{.Nope}}')).toBe('<no value>');
    expect(render('{{.Nope.Deeper}}')).toBe('<no value>');
    expect(render('{{.}}', 'x')).toBe('x');
  });

  it('keeps literal text around actions', () => {
    expect(render('id={{.Id}} tags={{.RepoTags}}!')).toBe('id=sha256:abc tags=[app:latest app:v2]!');
    expect(render('no actions')).toBe('no actions');
  });

  it('json, join, upper, lower, len, index and pipes', () => {
    expect(render('{{json .Config.Cmd}}')).toBe('["sh","-c","echo hi"]');
    expect(render('{{json .Config}}')).toBe(JSON.stringify(data.Config));
    expect(render('{{.Config.Env | json}}')).toBe('["A=1"]');
    expect(render('{{join .RepoTags ","}}')).toBe('app:latest,app:v2');
    expect(render('{{upper .Id}} {{lower "AB"}}')).toBe('SHA256:ABC ab');
    expect(render('{{len .RepoTags}}')).toBe('2');
    expect(render('{{index .RepoTags 1}} {{index .Config.Labels "a"}}')).toBe('app:v2 1');
    expect(render('{{json (index .RepoTags 0)}}')).toBe('"app:latest"');
  });

  it('if/else and range, with trim markers', () => {
    expect(render('{{if .Config.WorkingDir}}wd{{else}}none{{end}}')).toBe('none');
    expect(render('{{if .RepoTags}}tagged{{end}}')).toBe('tagged');
    expect(render('{{range .RepoTags}}<{{.}}>{{end}}')).toBe('<app:latest><app:v2>');
    expect(render('{{range .Empty}}x{{else}}empty{{end}}')).toBe('empty');
    expect(render('a {{- .Id -}} b')).toBe('asha256:abcb');
    expect(render('{{/* comment */}}ok')).toBe('ok');
  });

  it('rejects malformed templates with a USAGE error', () => {
    for (const bad of ['{{.Id', '{{nosuchfunc .Id}}', '{{if .Id}}x', '{{end}}', '{{.Id | .Size}}', '{{}}', '{{"open}}']) {
      let err: unknown;
      try {
        parseGoTemplate(bad).render(data);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(TsbuildError);
      expect((err as TsbuildError).code, bad).toBe('USAGE');
    }
    expect(() => render('{{.Id.Sub}}')).toThrow(TsbuildError);
  });

  it('printValue matches Go for lists and maps', () => {
    expect(printValue([['a'], { k: true }])).toBe('[[a] map[k:true]]');
  });

  it('parseFormatFlag handles the table prefix and \\t escapes as docker does', () => {
    expect(parseFormatFlag('table {{.ID}}\\t{{.Size}}')).toEqual({ table: true, template: '{{.ID}}\t{{.Size}}' });
    expect(parseFormatFlag('{{.ID}}')).toEqual({ table: false, template: '{{.ID}}' });
  });
});

describe('docker output helpers', () => {
  it('alignTabs pads like tabwriter(minwidth 10, padding 3)', () => {
    expect(alignTabs(['A\tBB\tC', 'longer-cell-x\tB\tCC'])).toBe(`${'A'.padEnd(16)}${'BB'.padEnd(10)}C\n${'longer-cell-x'.padEnd(16)}${'B'.padEnd(10)}CC\n`);
  });
  it('humanSize and humanDuration match go-units', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(2147840)).toBe('2.15MB');
    expect(humanSize(1000)).toBe('1kB');
    expect(humanDuration(500)).toBe('Less than a second');
    expect(humanDuration(45_000)).toBe('45 seconds');
    expect(humanDuration(60_000)).toBe('About a minute');
    expect(humanDuration(3_600_000)).toBe('About an hour');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
  });
  it('parseDuration reads Go durations', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('1d')).toBeUndefined();
    expect(parseDuration('')).toBeUndefined();
  });
});
