// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title A minimal ERC-1155 for tests and the indexer benchmark (anyone can mint).
/// @notice No receiver hooks (onERC1155Received is not called): send to accounts only.
contract TestMulti {
    mapping(uint256 id => mapping(address account => uint256)) public balanceOf;
    mapping(address account => mapping(address operator => bool)) public isApprovedForAll;

    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );
    event TransferBatch(
        address indexed operator,
        address indexed from,
        address indexed to,
        uint256[] ids,
        uint256[] values
    );
    event ApprovalForAll(address indexed account, address indexed operator, bool approved);
    event URI(string value, uint256 indexed id);

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == 0xd9b67a26;
    }

    function mint(address to, uint256 id, uint256 value) external {
        require(to != address(0), "zero address");
        balanceOf[id][to] += value;
        emit TransferSingle(msg.sender, address(0), to, id, value);
    }

    function mintBatch(address to, uint256[] calldata ids, uint256[] calldata values) external {
        require(to != address(0), "zero address");
        require(ids.length == values.length, "length mismatch");
        for (uint256 i = 0; i < ids.length; ++i) {
            balanceOf[ids[i]][to] += values[i];
        }
        emit TransferBatch(msg.sender, address(0), to, ids, values);
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata)
        external
    {
        require(to != address(0), "zero address");
        require(from == msg.sender || isApprovedForAll[from][msg.sender], "not allowed");
        balanceOf[id][from] -= value;
        balanceOf[id][to] += value;
        emit TransferSingle(msg.sender, from, to, id, value);
    }

    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] calldata ids,
        uint256[] calldata values,
        bytes calldata
    ) external {
        require(to != address(0), "zero address");
        require(ids.length == values.length, "length mismatch");
        require(from == msg.sender || isApprovedForAll[from][msg.sender], "not allowed");
        for (uint256 i = 0; i < ids.length; ++i) {
            balanceOf[ids[i]][from] -= values[i];
            balanceOf[ids[i]][to] += values[i];
        }
        emit TransferBatch(msg.sender, from, to, ids, values);
    }
}
