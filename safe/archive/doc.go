// Package archive owns the .safe module archive: a ZIP file whose entries sit
// at its root (conf/userconfig.xml, bin/<scripts>, web/..., sometimes
// manifest.xml), directories included, scripts with unix mode 0755.
//
// It answers three questions and no others:
//
//   - Is this archive safe to install? [Read] and [ReadFile] decompress the
//     whole archive into memory and refuse, before anything is written
//     anywhere, names that leave the module directory, links and special
//     files, duplicates, archives without conf/userconfig.xml, corrupt data
//     and archives bigger than [Limits] once decompressed.
//   - How does it land on disk? [Archive.Extract] writes the tree into a
//     directory that does not exist yet, all or nothing.
//   - How is a module packed? [Write], [WriteFile] and [Archive.WriteTo]
//     produce the same bytes for the same tree, so that packing twice gives
//     identical archives.
//
// What the files mean (the userconfig.xml model, the module layout under
// SAFE/modules) belongs to package safe and package modules.
package archive
