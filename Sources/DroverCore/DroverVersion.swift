/// drover's version, one for every program it installs (drover, drover-mcp).
public enum DroverVersion {
    public static let text = "0.4.0"
}
