; Plugback for Windows: an Inno Setup 6 script.
;
;   pyinstaller --noconfirm pyinstaller.spec                       (makes dist\plugback\)
;   iscc /DAppVersion=0.1.0 installers\windows\plugback.iss        (makes dist\plugback-0.1.0-setup.exe)
;
; Optional: /DWebView2Bootstrapper=path\to\MicrosoftEdgeWebview2Setup.exe bundles
; Microsoft's small WebView2 installer, run only when the runtime is missing
; (the release workflow downloads it). Without it, setup explains where to get it.
;
; * Per-user: no administrator rights, installs to %LOCALAPPDATA%\Programs\Plugback.
; * Start menu entry; optional desktop icon; optional start at login (the same
;   HKCU Run value "Plugback" that the app's "Start at login" setting writes,
;   see core/platform/autostart.py), on by default.
; * Uninstall stops the agent and removes the program, its shortcuts and the Run
;   value. It never touches backups (they are on your drives) or your settings
;   and history in %APPDATA%\Plugback and %LOCALAPPDATA%\Plugback.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define AppName "Plugback"
#define AgentExe "plugback-tray.exe"
#define SourceDir "..\..\dist\plugback"
; The WebView2 Runtime's client id (the same for every channel of the Evergreen runtime).
#define WebView2Key "Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"

[Setup]
AppId={{6E0C4B8A-4F5B-4C43-9B6E-7D1B2A9C5E10}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Plugback developers
AppPublisherURL=https://github.com/plugback/plugback
VersionInfoVersion={#AppVersion}
; Per-user install: {autopf} resolves to %LOCALAPPDATA%\Programs with lowest privileges.
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
UninstallDisplayIcon={app}\{#AgentExe}
UninstallDisplayName={#AppName}
SetupIconFile=..\icons\plugback.ico
OutputDir=..\..\dist
OutputBaseFilename=plugback-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
; The agent is running during an upgrade or uninstall: close it (Restart Manager), start it again after.
CloseApplications=force
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "startatlogin"; Description: "Start {#AppName} when I sign in (recommended: backups start when you plug in your drive)"; GroupDescription: "Start:"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
#ifdef WebView2Bootstrapper
Source: "{#WebView2Bootstrapper}"; DestDir: "{tmp}"; DestName: "MicrosoftEdgeWebview2Setup.exe"; Flags: deleteafterinstall; Check: NeedsWebView2
#endif

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AgentExe}"; Comment: "Back up your folders to a drive when you plug it in"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AgentExe}"; Tasks: desktopicon

[Registry]
; Start at login: the value the app itself reads and writes. Removed on uninstall.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "{#AppName}"; ValueData: """{app}\{#AgentExe}"""; Tasks: startatlogin; Flags: uninsdeletevalue

[Run]
#ifdef WebView2Bootstrapper
; Per-user WebView2 install when it is missing (the settings window needs it; without it
; the settings open in the browser instead).
Filename: "{tmp}\MicrosoftEdgeWebview2Setup.exe"; Parameters: "/silent /install"; StatusMsg: "Installing the Microsoft Edge WebView2 Runtime..."; Check: NeedsWebView2; Flags: waituntilterminated
#endif
Filename: "{app}\{#AgentExe}"; Description: "Start {#AppName} now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop the agent so its files can be removed. /T also ends an open settings window.
Filename: "{sys}\taskkill.exe"; Parameters: "/F /T /IM {#AgentExe}"; Flags: runhidden; RunOnceId: "StopAgent"

[UninstallDelete]
; Only what the program folder gained at run time (Python caches). Settings, history and
; backups live elsewhere and are kept on purpose.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
function WebView2Version(): String;
var
  Version: String;
begin
  Result := '';
  // Per-machine runtime (64-bit Windows keeps it in the 32-bit view), then per-user.
  if RegQueryStringValue(HKLM, 'SOFTWARE\WOW6432Node\{#WebView2Key}', 'pv', Version) and (Version <> '') and (Version <> '0.0.0.0') then
    Result := Version
  else if RegQueryStringValue(HKLM, 'SOFTWARE\{#WebView2Key}', 'pv', Version) and (Version <> '') and (Version <> '0.0.0.0') then
    Result := Version
  else if RegQueryStringValue(HKCU, 'Software\{#WebView2Key}', 'pv', Version) and (Version <> '') and (Version <> '0.0.0.0') then
    Result := Version;
end;

function NeedsWebView2(): Boolean;
begin
  Result := WebView2Version() = '';
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
#ifndef WebView2Bootstrapper
  if (CurStep = ssPostInstall) and NeedsWebView2() and not WizardSilent() then
    MsgBox('The Microsoft Edge WebView2 Runtime is not installed. Plugback backs up without it, ' +
           'but its settings window will open in your web browser instead.' + #13#10#13#10 +
           'Get the runtime (free, from Microsoft): https://go.microsoft.com/fwlink/p/?LinkId=2124703',
           mbInformation, MB_OK);
#endif
end;
